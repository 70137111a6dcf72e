"""One normal form for email addresses (shop/accounts/email_address.py), used wherever an address is
stored or compared, and the per-account rate limits keyed on it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts import services
from shop.accounts.cli import users_cli
from shop.accounts.email_address import limit_key, normalise_email
from shop.accounts.models import User
from shop.admin import users as user_admin
from shop.extensions import db
from shop.notifications.models import OutboxMessage
from tests.conftest import TEST_PASSWORD, csrf_token, totp_now


@pytest.mark.parametrize(("typed", "stored"), [
    ("a@ｅxample.com", "a@example.com"),  # full-width e in the domain
    ("ａ@example.com", "a@example.com"),  # full-width a in the local part
    ("ＡＮＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "ann@example.com"),  # full-width everything, @ and dot included
    ("Ann.Lee@Example.COM", "ann.lee@example.com"),
    ("  ann@example.com. ", "ann@example.com"),  # spaces and the root dot of the domain
    ("b@bücher.example", "b@xn--bcher-kva.example"),
    ("B@BÜCHER.example", "b@xn--bcher-kva.example"),
    ("b@xn--bcher-kva.example", "b@xn--bcher-kva.example"),
    ("\u3000ann@example.com\u3000", "ann@example.com"),  # ideographic spaces
])
def test_look_alike_spellings_have_one_normal_form(typed: str, stored: str) -> None:
    assert normalise_email(typed) == stored
    assert normalise_email(stored) == stored  # idempotent: a stored address stays as it is
    assert limit_key(typed) == "account:" + stored


@pytest.mark.parametrize("typed", ["", "ann", "ann@", "@example.com", "ann@@example.com",
                                   "ann@example..com", "a" * 250 + "@example.com"])
def test_what_is_not_an_address_is_refused(typed: str) -> None:
    with pytest.raises(ValueError):
        normalise_email(typed)


def test_registration_cli_and_invitation_cannot_make_a_second_account_with_a_look_alike(
    app: Flask, users: dict[str, int]
) -> None:
    with app.test_request_context():
        for spelling in ("CUSTOMER@ｅxample.com", "ｃustomer@example.com.", "customer@EXAMPLE.com"):
            with pytest.raises(services.FormErrors) as refused:
                services.create_user(email=spelling, password="a long and unusual passphrase",
                                     legal_name="Copy Cat", date_of_birth=None, role="pharmacist")
            assert "already" in refused.value.errors["email"]
            admin = db.session.get(User, users["admin"])
            with pytest.raises(services.FormErrors) as refused:
                user_admin.create_staff_account(email=spelling, legal_name="Copy Cat", role="pharmacist",
                                                actor=admin, link_for=lambda token: token)
            assert "already exists" in refused.value.errors["email"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == len(users)


def test_the_cli_stores_the_normal_form(app: Flask) -> None:
    result = app.test_cli_runner().invoke(users_cli, [
        "create", "--email", " Ｄana@Bücher.Example. ", "--name", "Dana Whitfield", "--role", "pharmacist",
        "--password", "a long and unusual passphrase"])
    assert result.exit_code == 0, result.output
    assert "dana@xn--bcher-kva.example" in result.output
    again = app.test_cli_runner().invoke(users_cli, [
        "create", "--email", "dana@xn--bcher-kva.example", "--name", "Dana Again", "--role", "admin",
        "--password", "a long and unusual passphrase"])
    assert again.exit_code == 1 and "already exists" in again.output
    with app.app_context():
        assert list(db.session.scalars(sa.select(User.email))) == ["dana@xn--bcher-kva.example"]


def test_sign_in_and_reset_find_the_account_by_any_spelling(app: Flask, make_user: Callable[..., int]) -> None:
    make_user("b@xn--bcher-kva.example")
    client = app.test_client()
    response = client.post("/account/sign-in", data={
        "email": "B@Bücher.example.", "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    other = app.test_client()
    other.post("/account/reset", data={"email": "ｂ@BÜCHER.example", "csrf_token": csrf_token(other, "/account/reset")})
    with app.app_context():
        assert db.session.scalars(sa.select(OutboxMessage.to_address)).all() == ["b@xn--bcher-kva.example"]


def attempt(client: FlaskClient, email: str, password: str, ip: str) -> int:
    return client.post("/account/sign-in", data={
        "email": email, "password": password, "csrf_token": csrf_token(client)},
        environ_base={"REMOTE_ADDR": ip}).status_code


def test_a_look_alike_spelling_gets_no_fresh_sign_in_tries(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    for n in range(5):
        assert attempt(client, "customer@example.com", "wrong password!!", f"198.51.100.{n}") == 200
    for spelling in ("customer@ｅxample.com", "ｃustomer@example.com", "customer@example.com. "):
        assert attempt(client, spelling, TEST_PASSWORD, "198.51.100.99") == 429, spelling


def test_a_look_alike_spelling_gets_no_fresh_reset_requests(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()

    def request_reset(email: str, ip: str) -> int:
        return client.post("/account/reset", data={
            "email": email, "csrf_token": csrf_token(client, "/account/reset")},
            environ_base={"REMOTE_ADDR": ip}).status_code

    assert [request_reset("customer@example.com", f"198.51.100.{n}") for n in range(3)] == [200] * 3
    assert request_reset("CUSTOMER@ｅxample.com", "198.51.100.99") == 429


def test_second_factor_attempts_are_limited_per_account(app: Flask, users: dict[str, int]) -> None:
    # Each wrong code comes from another address, after the (known) password: the per-address limit
    # never triggers, the per-account one does, and then even the right code is refused.
    def password_step(ip: str) -> FlaskClient:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = ip
        response = client.post("/account/sign-in", data={
            "email": "pharmacist@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
        assert "/account/sign-in/verify" in response.headers["Location"]
        return client

    def verify(client: FlaskClient, code: str) -> int:
        return client.post("/account/sign-in/verify", data={
            "code": code, "csrf_token": csrf_token(client, "/account/sign-in/verify")}).status_code

    for n in range(5):
        assert verify(password_step(f"198.51.100.{n}"), "000000") == 200
    assert verify(password_step("198.51.100.99"), totp_now()) == 429
    # Another account is not affected.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.98"
    other.post("/account/sign-in", data={
        "email": "admin@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(other)})
    assert verify(other, totp_now()) == 302
