"""Audit log page, roles, the users CLI and demo accounts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts import services
from shop.accounts.models import User
from shop.audit import AuditEvent, record
from shop.extensions import db
from tests.conftest import sign_in


def test_role_change_is_audited_and_ends_sessions(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    with app.app_context():
        admin = db.session.get(User, users["admin"])
        services.set_role(db.session.get(User, users["customer"]), "pharmacist", actor=admin)
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "user.role_changed")).one()
        assert event.actor_email == "admin@example.com"
        assert event.details_dict == {"old_role": "customer", "new_role": "pharmacist"}
    assert client.get("/account").status_code == 302


def test_an_admin_cannot_remove_their_own_admin_role(app: Flask, users: dict[str, int]) -> None:
    with app.app_context():
        admin = db.session.get(User, users["admin"])
        with pytest.raises(services.FormErrors, match="own admin role"):
            services.set_role(admin, "customer", actor=admin)
        assert db.session.get(User, users["admin"]).role == "admin"


def test_audit_details_never_hold_secrets(app: Flask) -> None:
    with app.app_context():
        event = record("test.event", password="hunter2", reset_token="abc", card_number="4242",
                       note="kept")
        db.session.commit()
        assert event.details_dict == {"note": "kept"}


def test_admin_audit_page_lists_and_filters(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    sign_in(app.test_client(), app, "customer@example.com", "wrong password here")
    admin = signed_in("admin")
    page = admin.get("/admin/audit").get_data(as_text=True)
    assert "sign_in.failed" in page and "sign_in.succeeded" in page
    filtered = admin.get("/admin/audit?action=sign_in.failed").get_data(as_text=True)
    assert 'data-label="What">Sign-in failed</th>' in filtered
    assert 'data-label="What">Signed in</th>' not in filtered
    by_actor = admin.get("/admin/audit?actor=admin@").get_data(as_text=True)
    assert "admin@example.com" in by_actor and "customer@example.com" not in by_actor
    assert "No events match." in admin.get("/admin/audit?from=2999-01-01").get_data(as_text=True)


def test_audit_page_paginates_with_keyset(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    with app.app_context():
        for n in range(120):
            record("bulk.event", n=n)
        db.session.commit()
    admin = signed_in("admin")
    first = admin.get("/admin/audit?action=bulk.event").get_data(as_text=True)
    assert first.count('data-label="What">Bulk: event</th>') == 50
    assert "N: 119<" in first and "N: 70<" in first and "N: 69<" not in first
    import re

    older = re.search(r'href="(/admin/audit\?[^"]*before=\d+[^"]*)"', first).group(1).replace("&amp;", "&")
    second = admin.get(older).get_data(as_text=True)
    assert "N: 69<" in second and "N: 119<" not in second


def test_cli_creates_staff_accounts(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "--email", "New.Pharmacist@Example.com",
                                 "--name", "Pat Chen", "--role", "pharmacist"],
                           input="a long staff passphrase\na long staff passphrase\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalars(sa.select(User).where(User.email == "new.pharmacist@example.com")).one()
        assert user.role == "pharmacist" and user.needs_two_factor
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "account.created")).one()
        assert event.details_dict["role"] == "pharmacist"


def test_cli_refuses_a_weak_password(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--email", "a@example.com", "--name", "A", "--role", "admin"],
        input="password1234\npassword1234\n")
    assert result.exit_code == 1
    assert "too common" in result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_cli_set_role_is_audited(app: Flask, users: dict[str, int]) -> None:
    result = app.test_cli_runner().invoke(
        args=["users", "set-role", "--email", "customer@example.com", "--role", "admin"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "user.role_changed")).one()
        assert event.actor_email == "cli"


def test_cli_never_demotes_the_last_active_admin(app: Flask, users: dict[str, int]) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "set-role", "--email", "admin@example.com", "--role", "customer"])

    assert result.exit_code != 0 and "last active admin" in result.output
    with app.app_context():
        assert db.session.get(User, users["admin"]).role == "admin"
    # With a second admin it is allowed.
    runner.invoke(args=["users", "set-role", "--email", "pharmacist@example.com", "--role", "admin"])
    result = runner.invoke(args=["users", "set-role", "--email", "admin@example.com", "--role", "customer"])
    assert result.exit_code == 0, result.output


def test_demo_accounts_only_in_development(app: Flask) -> None:
    from shop.accounts.demo import load_demo_accounts

    with app.app_context():
        assert load_demo_accounts() == 3
        assert load_demo_accounts() == 0  # idempotent
        app.config["DEMO_MODE"] = False
        try:
            with pytest.raises(RuntimeError):
                load_demo_accounts()
        finally:
            app.config["DEMO_MODE"] = True


def test_sign_in_page_shows_demo_accounts_only_in_development(app: Flask, client: FlaskClient) -> None:
    assert "Demo accounts (development only)" in client.get("/account/sign-in").get_data(as_text=True)
    app.config["DEMO_MODE"] = False
    try:
        assert "Demo accounts" not in client.get("/account/sign-in").get_data(as_text=True)
    finally:
        app.config["DEMO_MODE"] = True
