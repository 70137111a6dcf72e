"""Two-factor secrets are encrypted at rest: what the database holds cannot produce sign-in codes, is
bound to its own user row, and the migration converts existing plain secrets both ways."""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade

import config
from shop import create_app
from shop.accounts import secret_box, two_factor
from shop.accounts.models import User
from shop.audit import AuditEvent
from shop.extensions import db
from tests.conftest import TEST_PASSWORD, TOTP_SECRET, DatabaseFactory, csrf_token, make_app, totp_now

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def stored_secret(app: Flask, user_id: int) -> str | None:
    with app.app_context():
        return db.session.scalar(sa.select(User.totp_secret).where(User.id == user_id))


def set_stored_secret(app: Flask, user_id: int, value: str | None) -> None:
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user_id).values(totp_secret=value))
        db.session.commit()


def second_factor(app: Flask, email: str, code: str) -> object:
    client = app.test_client()
    response = client.post("/account/sign-in", data={
        "email": email, "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    assert "/account/sign-in/verify" in response.headers["Location"]
    return client.post("/account/sign-in/verify", data={
        "code": code, "csrf_token": csrf_token(client, "/account/sign-in/verify")})


# In the application ---------------------------------------------------------------------------------


def test_the_database_holds_a_sealed_value_not_the_secret(app: Flask, users: dict[str, int]) -> None:
    pharmacist = stored_secret(app, users["pharmacist"])
    admin = stored_secret(app, users["admin"])
    assert pharmacist.startswith("v1:") and len(pharmacist) <= 200
    assert TOTP_SECRET not in pharmacist and TOTP_SECRET.lower() not in pharmacist.lower()
    assert pharmacist != admin  # same secret, different rows and nonces: nothing to compare
    with app.app_context():
        assert secret_box.open_(users["pharmacist"], pharmacist) == TOTP_SECRET


def test_staff_sign_in_with_an_authenticator_code_still_works(app: Flask, users: dict[str, int]) -> None:
    response = second_factor(app, "pharmacist@example.com", totp_now())
    assert response.status_code == 302 and response.headers["Location"].endswith("/account")


def test_a_secret_moved_to_another_row_does_not_open_and_sign_in_is_refused(
    app: Flask, users: dict[str, int]
) -> None:
    # Both staff share TOTP_SECRET, so the code is right for the secret inside: only the binding to
    # the admin's row refuses it.
    admins_value = stored_secret(app, users["admin"])
    set_stored_secret(app, users["pharmacist"], admins_value)
    with app.app_context(), pytest.raises(secret_box.UnreadableSecret):
        secret_box.open_(users["pharmacist"], admins_value)
    response = second_factor(app, "pharmacist@example.com", totp_now())
    assert response.status_code == 200
    assert "That code is not correct or was already used" in response.get_data(as_text=True)
    with app.app_context():
        last = db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (last.action, last.object_id) == ("sign_in.second_factor_failed", str(users["pharmacist"]))
    # The admin's own row still works.
    assert second_factor(app, "admin@example.com", totp_now()).status_code == 302


def test_a_tampered_value_refuses_sign_in(app: Flask, users: dict[str, int]) -> None:
    value = stored_secret(app, users["pharmacist"])
    raw = bytearray(base64.urlsafe_b64decode(value[3:]))
    raw[20] ^= 1
    set_stored_secret(app, users["pharmacist"], "v1:" + base64.urlsafe_b64encode(bytes(raw)).decode())
    response = second_factor(app, "pharmacist@example.com", totp_now())
    assert response.status_code == 200 and "not correct" in response.get_data(as_text=True)


def test_enrolment_stores_the_secret_sealed_and_turning_off_removes_it(
    app: Flask, users: dict[str, int], signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("customer")
    page = client.get("/account/two-factor").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    client.post("/account/two-factor", data={
        "code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(client, "/account/two-factor")})
    stored = stored_secret(app, users["customer"])
    assert stored.startswith("v1:") and secret not in stored
    with app.app_context():
        assert secret_box.open_(users["customer"], stored) == secret
    client.post("/account/two-factor/disable", data={
        "password": TEST_PASSWORD, "csrf_token": csrf_token(client, "/account/two-factor")})
    assert stored_secret(app, users["customer"]) is None


def test_demo_staff_secrets_are_sealed_and_their_codes_sign_in(app: Flask) -> None:
    from shop.accounts.demo import DEMO_TOTP_SECRET, load_demo_accounts

    with app.app_context():
        load_demo_accounts()
        rows = db.session.execute(sa.select(User.id, User.totp_secret).where(User.role != "customer")).all()
        assert len(rows) == 2
        for user_id, stored in rows:
            assert DEMO_TOTP_SECRET not in stored and secret_box.open_(user_id, stored) == DEMO_TOTP_SECRET
    client = app.test_client()
    client.post("/account/sign-in", data={"email": "pharmacist@demo.example",
                                          "password": "demo-pharmacist-password", "csrf_token": csrf_token(client)})
    response = client.post("/account/sign-in/verify", data={
        "code": pyotp.TOTP(DEMO_TOTP_SECRET).now(), "csrf_token": csrf_token(client, "/account/sign-in/verify")})
    assert response.status_code == 302


# The sealed format ----------------------------------------------------------------------------------


def flip(value: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value[3:]))
    raw[index] ^= 0x80
    return "v1:" + base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: flip(v, 0),  # nonce
        lambda v: flip(v, 15),  # ciphertext
        lambda v: flip(v, -1),  # tag
        lambda v: v[:-8],  # truncated
        lambda v: "v1:AAAA",  # far too short
        lambda v: "v1:not base64!",
        lambda v: "v2:" + v[3:],  # unknown version
        lambda v: TOTP_SECRET,  # a plain secret written straight into the column
    ],
)
def test_tampered_values_do_not_open(tamper: Callable[[str], str]) -> None:
    value = secret_box.seal_with(KEY, 7, TOTP_SECRET)
    assert secret_box.open_with(KEY, 7, value) == TOTP_SECRET
    with pytest.raises(secret_box.UnreadableSecret):
        secret_box.open_with(KEY, 7, tamper(value))


def test_another_key_or_user_does_not_open() -> None:
    value = secret_box.seal_with(KEY, 7, TOTP_SECRET)
    with pytest.raises(secret_box.UnreadableSecret):
        secret_box.open_with(OTHER_KEY, 7, value)
    with pytest.raises(secret_box.UnreadableSecret):
        secret_box.open_with(KEY, 70, value)


def test_a_user_without_an_id_cannot_be_sealed_for() -> None:
    with pytest.raises(ValueError, match="flush"):
        secret_box.seal_with(KEY, None, TOTP_SECRET)  # type: ignore[arg-type]


# The key --------------------------------------------------------------------------------------------


def test_configured_key_wins_and_tolerates_env_file_quirks(tmp_path: Path) -> None:
    settings = {"ACCOUNT_SECRETS_KEY": b64(KEY).rstrip("=") + "\n", "ACCOUNT_SECRETS_KEY_AUTOCREATE": True}
    assert secret_box.load_key(settings, tmp_path) == KEY
    assert not (tmp_path / "account-secrets.key").exists()


def test_development_key_file_is_made_once_private_and_apart_from_the_prescription_key(
    tmp_path: Path,
) -> None:
    from shop.prescriptions.storage import load_key as prescription_key

    settings = {"ACCOUNT_SECRETS_KEY_AUTOCREATE": True}
    key = secret_box.load_key(settings, tmp_path)
    path = tmp_path / "account-secrets.key"
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    content = path.read_bytes()
    assert secret_box.load_key(settings, tmp_path) == key and path.read_bytes() == content
    assert prescription_key({"PRESCRIPTION_KEY_AUTOCREATE": True}, tmp_path) != key


def test_key_file_race_gives_everyone_the_same_key(tmp_path: Path) -> None:
    results: list[bytes] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        results.append(secret_box.load_key({"ACCOUNT_SECRETS_KEY_AUTOCREATE": True}, tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1


@pytest.mark.parametrize("settings", [{}, {"ACCOUNT_SECRETS_KEY": ""}, {"ACCOUNT_SECRETS_KEY_AUTOCREATE": False}])
def test_no_key_is_refused(tmp_path: Path, settings: dict[str, object]) -> None:
    with pytest.raises(RuntimeError, match="ACCOUNT_SECRETS_KEY is not set"):
        secret_box.load_key(settings, tmp_path)
    assert not (tmp_path / "account-secrets.key").exists()


@pytest.mark.parametrize("value", [b64(bytes(16)), b64(bytes(33)), "not base64 at all!"])
def test_a_bad_key_is_refused_without_echoing_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(RuntimeError, match="ACCOUNT_SECRETS_KEY") as refused:
        secret_box.load_key({"ACCOUNT_SECRETS_KEY": value}, tmp_path)
    assert value not in str(refused.value)


def production(monkeypatch: pytest.MonkeyPatch, account_key: str) -> Flask:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://shop@127.0.0.1/shop")
    for name, value in {
        "SECRET_KEY": "x" * 48,
        "PUBLIC_URL": "https://shop.example",
        "PRESCRIPTION_ENCRYPTION_KEY": b64(OTHER_KEY),
        "ACCOUNT_SECRETS_KEY": account_key,
        "MAIL_BACKEND": "smtp",
        "STRIPE_SECRET_KEY": "sk_live_example",
        "STRIPE_API_BASE": None,
        "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://shop@127.0.0.1/shop",
    }.items():
        monkeypatch.setattr(config.ProductionConfig, name, value)
    return create_app(config.ProductionConfig)


def test_production_refuses_to_start_without_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="ACCOUNT_SECRETS_KEY must hold"):
        production(monkeypatch, "")


def test_production_refuses_a_malformed_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="ACCOUNT_SECRETS_KEY must decode to 32 bytes"):
        production(monkeypatch, b64(bytes(16)))


def test_production_starts_with_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    app = production(monkeypatch, b64(KEY))
    assert secret_box.app_key(app) == KEY


# Migration 0007 on a real database --------------------------------------------------------------------

BEFORE = "0006_catalog_versions"


def add_plain_accounts() -> None:
    now = dt.datetime(2026, 1, 1)
    users = sa.table(
        "user_account", *(sa.column(name) for name in (
            "id", "email", "password_hash", "legal_name", "phone", "role", "active", "created_at",
            "password_changed_at", "totp_secret", "totp_enabled")),
    )
    common = {"password_hash": "x", "phone": "", "active": True, "created_at": now, "password_changed_at": now}
    db.session.execute(users.insert(), [
        {"id": 41, "email": "rx@example.com", "legal_name": "Rx", "role": "pharmacist",
         "totp_secret": TOTP_SECRET, "totp_enabled": True, **common},
        {"id": 42, "email": "cu@example.com", "legal_name": "Cu", "role": "customer",
         "totp_secret": None, "totp_enabled": False, **common},
    ])
    db.session.commit()


def secrets_by_id() -> dict[int, str | None]:
    return dict(db.session.execute(sa.text("SELECT id, totp_secret FROM user_account ORDER BY id")).all())


def test_migration_encrypts_existing_secrets_and_downgrade_restores_them(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("secrets"), ACCOUNT_SECRETS_KEY=b64(KEY))
    with app.app_context():
        upgrade(revision=BEFORE)
        add_plain_accounts()
        upgrade()
        stored = secrets_by_id()
        assert stored[42] is None
        assert stored[41].startswith("v1:") and TOTP_SECRET not in stored[41]
        # Sealed with the application's key, for that row: the app opens it.
        assert secret_box.open_(41, stored[41]) == TOTP_SECRET
        assert "ix_stock_movement_lot_id" in {i["name"] for i in sa.inspect(db.engine).get_indexes("stock_movement")}
        db.session.remove()
        downgrade(revision=BEFORE)
        assert secrets_by_id() == {41: TOTP_SECRET, 42: None}
        db.session.remove()
        db.engine.dispose()


def test_migration_without_a_key_refuses_and_changes_nothing(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("nokey"), ACCOUNT_SECRETS_KEY="", ACCOUNT_SECRETS_KEY_AUTOCREATE=False)
    with app.app_context():
        upgrade(revision=BEFORE)
        add_plain_accounts()
        db.session.remove()
        # Through alembic itself: Flask-Migrate's wrapper turns the error into a logged exit(1).
        with pytest.raises(RuntimeError, match=r"0007_account_secrets needs .* ACCOUNT_SECRETS_KEY is not set"):
            command.upgrade(app.extensions["migrate"].migrate.get_config(), "head")
        assert db.session.scalar(sa.text("SELECT version_num FROM alembic_version")) == BEFORE
        assert secrets_by_id()[41] == TOTP_SECRET
        db.session.remove()
        db.engine.dispose()


def test_a_second_factor_code_in_other_digits_never_matches() -> None:
    """A code is six ASCII digits: "²²²²²²" or Arabic-Indic digits pass str.isdigit() but are no code."""
    secret = pyotp.random_base32()
    moment = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    good = pyotp.TOTP(secret).at(moment)
    assert two_factor.matching_step(secret, good, moment) is not None
    assert two_factor.matching_step(secret, f"{good[:3]} {good[3:]}", moment) is not None
    arabic = good.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for code in ("²²²²²²", arabic, good + "0", ""):
        assert two_factor.matching_step(secret, code, moment) is None
