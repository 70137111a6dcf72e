"""The security baseline: rate limits, CSRF, headers, safe redirects, reset links, field tampering."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, User
from shop.audit import AuditEvent
from shop.extensions import db
from shop.notifications.models import OutboxMessage
from shop.safe_redirect import safe_next
from tests.conftest import TEST_PASSWORD, csrf_token, make_app, sign_in


def attempt_sign_in(client: FlaskClient, email: str, password: str, ip: str = "203.0.113.7") -> int:
    return client.post(
        "/account/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_token(client)},
        environ_base={"REMOTE_ADDR": ip},
    ).status_code


def test_sign_in_is_rate_limited_per_account(app: Flask, users: dict[str, int]) -> None:
    # Five wrong passwords for one account, each from a different address: the sixth try is refused,
    # even with the right password, while another account is unaffected.
    client = app.test_client()
    for n in range(5):
        assert attempt_sign_in(client, "customer@example.com", "wrong password!!", f"198.51.100.{n}") == 200
    assert attempt_sign_in(client, "Customer@Example.com", TEST_PASSWORD, "198.51.100.99") == 429
    assert attempt_sign_in(client, "other@example.com", TEST_PASSWORD, "198.51.100.98") == 302


def test_sign_in_is_rate_limited_per_address(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    for n in range(30):
        assert attempt_sign_in(client, f"nobody{n}@example.com", "wrong password!!") == 200
    assert attempt_sign_in(client, "customer@example.com", TEST_PASSWORD) == 429
    assert "Too many attempts" in client.post(
        "/account/sign-in", data={"email": "x@example.com", "password": "y",
                                   "csrf_token": csrf_token(client)},
        environ_base={"REMOTE_ADDR": "203.0.113.7"}).get_data(as_text=True)
    # Another address is not blocked.
    assert attempt_sign_in(client, "customer@example.com", TEST_PASSWORD, "192.0.2.1") == 302


def test_password_reset_requests_are_rate_limited(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    codes = [
        client.post("/account/reset", data={"email": "customer@example.com",
                                            "csrf_token": csrf_token(client, "/account/reset")}).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_rate_limits_can_be_kept_in_redis(databases) -> None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable at 127.0.0.1:6379")
    from flask_migrate import upgrade

    app = make_app(databases.new("redis"), RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0",
                   RATELIMIT_KEY_PREFIX=f"shop-test-{id(object())}")
    with app.app_context():
        upgrade()
    client = app.test_client()
    statuses = [attempt_sign_in(client, "someone@example.com", "wrong password!!", "192.0.2.50")
                for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    with app.app_context():
        db.engine.dispose()


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    response = client.post("/account/profile", data={
        "legal_name": "Changed Name", "date_of_birth": "1980-01-01", "phone": ""})
    assert response.status_code == 400
    with app.app_context():
        assert db.session.get(User, users["customer"]).legal_name != "Changed Name"
    assert client.post("/account/sign-out").status_code == 400
    assert client.get("/account/profile").status_code == 200  # still signed in


@pytest.mark.parametrize("url", ["/", "/products/naltrexone", "/account/sign-in", "/nowhere"])
def test_security_headers_on_every_response(client: FlaskClient, url: str) -> None:
    headers = client.get(url).headers
    csp = headers["Content-Security-Policy"]
    for directive in ("frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'",
                      "script-src 'self'", "default-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers  # only in production (HTTPS)


def test_hsts_and_secure_cookie_in_production(app: Flask) -> None:
    prod_like = make_app(app.config["SQLALCHEMY_DATABASE_URI"], HSTS=True, SESSION_COOKIE_SECURE=True)
    response = prod_like.test_client().get("/account/sign-in")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in response.headers["Set-Cookie"]


def test_no_caching_of_personal_pages(signed_in: Callable[[str], FlaskClient],
                                      client: FlaskClient) -> None:
    customer = signed_in("customer")
    assert customer.get("/account/profile").headers["Cache-Control"] == "no-store"
    assert customer.get("/products/naltrexone").headers["Cache-Control"] == "no-store"
    assert client.get("/account/sign-in").headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/products/naltrexone").headers.get("Cache-Control", "")


def test_session_cookie_flags(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    client.get("/account/sign-in")
    response = client.post("/account/sign-in", data={
        "email": "customer@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil.example",
     "javascript:alert(1)", "http:/evil.example", "/%0d%0aSet-Cookie:x=y", " //evil.example",
     "evil.example", "/\t/evil.example", "/\n/evil.example"],
)
def test_open_redirects_are_refused(app: Flask, users: dict[str, int], target: str) -> None:
    client = app.test_client()
    response = client.post(f"/account/sign-in?next={target}", data={
        "email": "customer@example.com", "password": TEST_PASSWORD, "next": target,
        "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location in ("/account", "http://localhost/account"), location


def test_safe_next_keeps_local_paths() -> None:
    assert safe_next("/products/naltrexone?strength=4-5-mg") == "/products/naltrexone?strength=4-5-mg"
    assert safe_next("/account/profile") == "/account/profile"
    assert safe_next(None) is None and safe_next("") is None


def test_sign_in_returns_to_the_page_asked_for(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    response = client.get("/account/addresses")
    assert response.headers["Location"].endswith("/account/sign-in?next=/account/addresses")
    response = client.post("/account/sign-in?next=/account/addresses", data={
        "email": "customer@example.com", "password": TEST_PASSWORD, "next": "/account/addresses",
        "csrf_token": csrf_token(client, "/account/sign-in?next=/account/addresses")})
    assert response.headers["Location"] == "/account/addresses"


def reset_link(app: Flask) -> str:
    with app.app_context():
        body = db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id.desc())).first().body
    return re.search(r"http://localhost(/account/reset/\S+)", body).group(1)


def test_password_reset_link_is_emailed_single_use_and_ends_sessions(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    old_session = signed_in("customer")
    client = app.test_client()
    response = client.post("/account/reset", data={
        "email": "CUSTOMER@example.com", "csrf_token": csrf_token(client, "/account/reset")})
    assert "Check your email" in response.get_data(as_text=True)
    link = reset_link(app)
    assert client.get(link).status_code == 200
    response = client.post(link, data={"password": "brand new long passphrase",
                                       "csrf_token": csrf_token(client, link)})
    assert response.status_code == 302
    fresh = app.test_client()
    assert sign_in(fresh, app, "customer@example.com", "brand new long passphrase").status_code == 302
    assert old_session.get("/account/profile").status_code == 302
    # Used once: the link is dead now.
    assert client.get(link).status_code == 404
    response = client.post(link, data={"password": "another new passphrase", "csrf_token": "x"})
    assert response.status_code in (400, 404)
    with app.app_context():
        actions = set(db.session.scalars(sa.select(AuditEvent.action)))
        assert {"password_reset.requested", "password.reset"} <= actions
        assert not any(
            "passphrase" in details for details in db.session.scalars(sa.select(AuditEvent.details))
        )


def test_password_reset_link_expires(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    client.post("/account/reset", data={"email": "customer@example.com",
                                        "csrf_token": csrf_token(client, "/account/reset")})
    link = reset_link(app)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)
    with time_machine.travel(later):
        assert client.get(link).status_code == 404
        assert "invalid, has expired" in client.get(link).get_data(as_text=True)


def test_reset_link_ignores_a_forged_host_header(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    html = client.get("/account/reset", headers={"Host": "evil.example"}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    response = client.post("/account/reset", data={"email": "customer@example.com", "csrf_token": token},
                           headers={"Host": "evil.example"})
    assert response.status_code == 200
    with app.app_context():
        body = db.session.scalars(sa.select(OutboxMessage)).one().body
    assert "evil.example" not in body
    assert "http://localhost/account/reset/" in body


def test_unknown_email_reset_looks_the_same_and_sends_nothing(app: Flask, client: FlaskClient) -> None:
    response = client.post("/account/reset", data={
        "email": "nobody@example.com", "csrf_token": csrf_token(client, "/account/reset")})
    assert "Check your email" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0


def test_fields_users_must_not_set_are_ignored(
    app: Flask, client: FlaskClient, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client.post("/account/register", data={
        "email": "sneaky@example.com", "legal_name": "Sneaky Person", "date_of_birth": "1990-01-01",
        "password": "a long and unusual passphrase", "consent": "y", "role": "admin",
        "active": "y", "id": "1", "csrf_token": csrf_token(client, "/account/register")})
    with app.app_context():
        body = db.session.scalars(sa.select(OutboxMessage.body)
                                  .where(OutboxMessage.to_address == "sneaky@example.com")).one()
    link = re.search(r"http://localhost(/account/register/\S+)", body).group(1)
    client.post(link, data={"password": "a long and unusual passphrase",
                            "csrf_token": csrf_token(client, link), "role": "admin"})
    with app.app_context():
        role = db.session.scalars(sa.select(User.role).where(User.email == "sneaky@example.com")).one()
        assert role == "customer"
    customer = signed_in("customer")
    customer.post("/account/addresses/new", data={
        "recipient": "X", "line1": "1 Elm St", "city": "Salem", "state": "OR", "postal_code": "97301",
        "country": "US", "user_id": str(users["other_customer"]),
        "csrf_token": csrf_token(customer, "/account/addresses/new")})
    with app.app_context():
        owners = set(db.session.scalars(sa.select(Address.user_id)))
    assert owners == {users["customer"]}


def test_guessed_ids_are_404(signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("customer")
    assert client.get("/account/addresses/999999").status_code == 404
    assert client.post("/account/health/999999/delete",
                       data={"csrf_token": csrf_token(client, "/account")}).status_code == 404


def test_dev_mailbox_does_not_exist_outside_development(app: Flask) -> None:
    production_like = make_app(app.config["SQLALCHEMY_DATABASE_URI"], DEV_MAILBOX=False)
    assert production_like.test_client().get("/dev/mailbox").status_code == 404
