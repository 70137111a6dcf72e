"""The two-factor secret being set up stays on the server: the session cookie is signed, not
encrypted, so anyone holding it (or looking over a shared machine's cookie jar) could read it."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable

import pyotp
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import base64_decode

from shop.accounts import secret_box
from shop.accounts.models import User, UserSession
from shop.extensions import db
from tests.conftest import TEST_PASSWORD, csrf_token


def readable_cookie(client: FlaskClient) -> str:
    """What anyone can read from Flask's session cookie without the key."""
    value = client.get_cookie("session").value
    compressed = value.startswith(".")
    payload = base64_decode(value.lstrip(".").split(".")[0])
    return json.dumps(json.loads(zlib.decompress(payload) if compressed else payload))


def shown_secret(html: str) -> str:
    return re.search(r'<code class="secret">([A-Z2-7]+)</code>', html).group(1)


def session_rows(app: Flask, user_id: int) -> list[tuple[object, ...]]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            sa.select(*UserSession.__table__.columns).where(UserSession.user_id == user_id)
            .order_by(UserSession.id))]


def test_the_setup_secret_is_not_in_the_cookie_and_enrolment_still_works(
    app: Flask, make_user: Callable[..., int]
) -> None:
    user_id = make_user("new.staff@example.com", role="pharmacist")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.totp_enabled, user.totp_secret = False, None
        db.session.commit()
    client = app.test_client()
    client.post("/account/sign-in", data={
        "email": "new.staff@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    before = session_rows(app, user_id)
    secret = shown_secret(client.get("/account/sign-in/enrol").get_data(as_text=True))
    # The same secret on the next visit (the QR code stays valid), and never in the cookie.
    assert shown_secret(client.get("/account/sign-in/enrol").get_data(as_text=True)) == secret
    assert session_rows(app, user_id) == before  # showing the page (a GET) changes nothing
    assert len(secret) == 32  # 160 bits, like pyotp.random_base32()
    cookie = readable_cookie(client)
    assert "sid" in cookie  # the cookie was read: it holds the session's token and nothing more
    assert secret not in cookie and secret.lower() not in cookie.lower()
    # Another browser signing in to the same account is offered another secret.
    other = app.test_client()
    other.post("/account/sign-in", data={
        "email": "new.staff@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(other)})
    assert shown_secret(other.get("/account/sign-in/enrol").get_data(as_text=True)) != secret

    response = client.post("/account/sign-in/enrol", data={
        "code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(client, "/account/sign-in/enrol")})
    assert len(re.findall(r"<li><code>([0-9a-f-]+)</code></li>", response.get_data(as_text=True))) == 10
    assert secret not in readable_cookie(client)
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.totp_enabled and secret_box.open_(user_id, user.totp_secret) == secret


def test_a_customer_turning_it_on_keeps_the_secret_off_the_cookie_too(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("customer")
    with app.app_context():
        user_id = db.session.scalars(sa.select(UserSession.user_id)).one()
    before = session_rows(app, user_id)
    secret = shown_secret(client.get("/account/two-factor").get_data(as_text=True))
    assert shown_secret(client.get("/account/two-factor").get_data(as_text=True)) == secret
    assert session_rows(app, user_id) == before  # a GET changes nothing
    assert secret not in readable_cookie(client)
    response = client.post("/account/two-factor", data={
        "code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(client, "/account/two-factor")})
    assert response.status_code == 200 and "recovery" in response.get_data(as_text=True).lower()
