"""Migration 0009 on a real database: stored addresses take the one normal form, a clash stops it with
names, and invitation links made before it are recognised as invitations."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from alembic import command
from flask_migrate import downgrade, upgrade

from shop.extensions import db
from tests.conftest import DatabaseFactory, make_app

BEFORE = "0008_row_versions"
NOW = dt.datetime(2026, 1, 1)


def add_accounts(emails: dict[int, str]) -> None:
    users = sa.table("user_account", *(sa.column(name) for name in (
        "id", "email", "password_hash", "legal_name", "phone", "role", "active", "created_at",
        "password_changed_at", "totp_enabled")))
    db.session.execute(users.insert(), [
        {"id": user_id, "email": email, "password_hash": "x", "legal_name": "X", "phone": "",
         "role": "customer", "active": True, "created_at": NOW, "password_changed_at": NOW,
         "totp_enabled": False}
        for user_id, email in emails.items()])
    db.session.commit()


def emails() -> dict[int, str]:
    return dict(db.session.execute(sa.text("SELECT id, email FROM user_account ORDER BY id")).all())


def test_stored_addresses_are_normalised_and_invitations_marked(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("emails"))
    with app.app_context():
        upgrade(revision=BEFORE)
        # What the code before 0009 stored: NFC, lower-cased, the domain in Unicode.
        add_accounts({1: "b@bücher.example", 2: "ann@example.com", 3: "staff@clinic.example"})
        db.session.execute(sa.text(
            "INSERT INTO password_reset (token_hash, user_id, created_at, expires_at)"
            " VALUES ('a', 3, :now, :now), ('b', 2, :now, :now)"), {"now": NOW})
        db.session.execute(sa.text(
            "INSERT INTO audit_event (at, action, object_type, object_id, details)"
            " VALUES (:now, 'account.created', 'user', '3', :invited), (:now, 'account.created', 'user', '2', '{}')"),
            {"now": NOW, "invited": json.dumps({"invited": True, "role": "pharmacist"})})
        db.session.commit()
        upgrade()
        assert emails() == {1: "b@xn--bcher-kva.example", 2: "ann@example.com", 3: "staff@clinic.example"}
        purposes = dict(db.session.execute(sa.text("SELECT user_id, purpose FROM password_reset")).all())
        assert purposes == {3: "invitation", 2: "reset"}
        db.session.remove()
        downgrade(revision=BEFORE)
        assert emails()[1] == "b@bücher.example"  # the form the older code looks up
        db.session.remove()
        db.engine.dispose()


def test_two_accounts_that_are_one_address_stop_the_migration(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("clash"))
    with app.app_context():
        upgrade(revision=BEFORE)
        add_accounts({7: "ann@example.com", 8: "ａnn@example.com"})  # full-width a: two accounts before
        db.session.remove()
        with pytest.raises(RuntimeError, match=r"ann@example\.com: accounts 7, 8"):
            command.upgrade(app.extensions["migrate"].migrate.get_config(), "head")
        assert db.session.scalar(sa.text("SELECT version_num FROM alembic_version")) == BEFORE
        assert emails() == {7: "ann@example.com", 8: "ａnn@example.com"}
        db.session.remove()
        db.engine.dispose()
