"""The development mailbox holds password links: only this machine may read it, and production has none."""

from __future__ import annotations

import pytest
from flask import Flask

import config
from shop import create_app
from shop.extensions import db
from shop.notifications.services import enqueue

LINK = "http://localhost/account/reset/secret-token-of-the-staff-member"


@pytest.fixture
def a_password_link(app: Flask) -> None:
    with app.app_context():
        enqueue(to="pharmacist@example.com", subject="Choose your password", body=LINK,
                kind="staff_invitation")
        db.session.commit()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_the_mailbox_answers_this_machine_and_says_so(app: Flask, a_password_link: None, address: str) -> None:
    response = app.test_client().get("/dev/mailbox", environ_base={"REMOTE_ADDR": address})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert LINK in html
    assert "Only this computer can open this page" in html


@pytest.mark.parametrize("address", ["192.0.2.10", "10.0.0.5", "::ffff:192.0.2.10", "2001:db8::1", ""])
def test_the_mailbox_does_not_exist_for_anyone_else(app: Flask, a_password_link: None, address: str) -> None:
    response = app.test_client().get("/dev/mailbox", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 404
    assert LINK not in response.get_data(as_text=True)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:5000", "LOCALHOST:8000", "[::1]:5000", "[::1]"])
def test_the_mailbox_answers_loopback_names_on_any_port(app: Flask, a_password_link: None, host: str) -> None:
    response = app.test_client().get("/dev/mailbox", headers={"Host": host},
                                     environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 200 and LINK in response.get_data(as_text=True)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "[::1].evil.example", ""])
def test_the_mailbox_does_not_exist_under_another_name_even_from_this_machine(
    app: Flask, a_password_link: None, host: str
) -> None:
    """DNS rebinding: a page at evil.example points its name at 127.0.0.1 and reads the answer."""
    response = app.test_client().get("/dev/mailbox", headers={"Host": host},
                                     environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.status_code == 404
    assert LINK not in response.get_data(as_text=True)


def _production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://shop@127.0.0.1/shop")
    for name, value in {
        "SECRET_KEY": "x" * 48, "PUBLIC_URL": "https://shop.example", "PRESCRIPTION_ENCRYPTION_KEY": "k" * 43,
        "ACCOUNT_SECRETS_KEY": "k" * 43, "MAIL_BACKEND": "smtp", "STRIPE_SECRET_KEY": "sk_live_example",
        "STRIPE_API_BASE": None, "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://shop@127.0.0.1/shop",
    }.items():
        monkeypatch.setattr(config.ProductionConfig, name, value)


def test_production_has_no_mailbox_and_refuses_to_start_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _production_settings(monkeypatch)
    production = create_app(config.ProductionConfig)
    assert production.config["DEV_MAILBOX"] is False
    # Even from this machine: the page does not exist (the database is never reached).
    assert production.test_client().get("/dev/mailbox").status_code == 404
    monkeypatch.setattr(config.ProductionConfig, "DEV_MAILBOX", True)
    with pytest.raises(RuntimeError, match="DEV_MAILBOX must be off in production"):
        create_app(config.ProductionConfig)
