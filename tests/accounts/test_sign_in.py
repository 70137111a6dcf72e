"""Registration, sign-in, sessions, sign-out and two-factor sign-in through the real forms."""

from __future__ import annotations

import re
from collections.abc import Callable

import pyotp
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts import services
from shop.accounts.models import PendingRegistration, User, UserSession
from shop.audit import AuditEvent
from shop.extensions import db
from shop.notifications.models import OutboxMessage
from tests.conftest import TEST_PASSWORD, csrf_token, sign_in, totp_now


def actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


def register(client: FlaskClient, **overrides: str) -> object:
    data = {
        "email": "  New.Person@Example.COM ",
        "legal_name": "New  Person",
        "date_of_birth": "1990-04-02",
        "password": "a long and unusual passphrase",
        "consent": "y",
        "csrf_token": csrf_token(client, "/account/register"),
    }
    data.update(overrides)
    return client.post("/account/register", data=data)


def emailed_link(app: Flask, to: str, path: str = "/account/register/") -> str:
    with app.app_context():
        body = db.session.scalars(sa.select(OutboxMessage.body).where(OutboxMessage.to_address == to)
                                  .order_by(OutboxMessage.id.desc())).first()
    return re.search(rf"http://localhost({re.escape(path)}\S+)", body).group(1)


def user_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(User))


def test_register_emails_a_link_that_makes_the_account_and_signs_in(app: Flask, client: FlaskClient) -> None:
    response = register(client)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Check your email" in page and "new.person@example.com" in page
    assert user_count(app) == 0  # nothing is made until the link is opened
    link = emailed_link(app, "new.person@example.com")

    browser = app.test_client()  # the link may be opened anywhere, e.g. on a phone
    confirm = browser.get(link)
    assert confirm.status_code == 200 and "Create my account" in confirm.get_data(as_text=True)
    assert user_count(app) == 0  # opening the link (a GET) changes nothing
    response = browser.post(link, data={"password": "a long and unusual passphrase",
                                        "csrf_token": csrf_token(browser, link)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/profile")
    assert "Welcome! Your account is ready." in browser.get("/account/profile").get_data(as_text=True)
    with app.app_context():
        user = db.session.scalars(sa.select(User)).one()
        assert user.email == "new.person@example.com"
        assert user.legal_name == "New Person"
        assert user.role == "customer"
        assert user.password_hash.startswith("scrypt:")
        assert "a long and unusual passphrase" not in user.password_hash
        assert user.privacy_consent_at is not None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PendingRegistration)) == 0
    assert "account.created" in actions(app) and "sign_in.succeeded" in actions(app)
    # The link worked once; the password chosen at registration signs in.
    assert browser.get(link).status_code == 404
    assert sign_in(app.test_client(), app, "new.person@example.com",
                   "a long and unusual passphrase").status_code == 302


def test_registering_a_taken_address_looks_the_same_and_emails_its_owner(
    app: Flask, users: dict[str, int]
) -> None:
    def answer(email: str) -> tuple[int, str, str | None]:
        visitor = app.test_client()
        response = register(visitor, email=email)
        html = re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))  # CSRF tokens differ
        return response.status_code, html.replace(email.strip().lower(), "ADDRESS"), response.headers.get(
            "Set-Cookie", "").split("=")[0]

    taken = answer("Customer@Example.COM")
    new = answer("Someone.New@Example.COM")
    assert taken == new
    assert "Check your email" in taken[1] and "already" not in taken[1]
    assert user_count(app) == len(users)  # no second account, and no account yet for the new address
    with app.app_context():
        [to_owner] = db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.to_address == "customer@example.com")).all()
        assert to_owner.kind == "registration_existing"
        assert "Someone tried to create an account with this email address" in to_owner.body
        assert "http://localhost/account/sign-in" in to_owner.body
        assert "http://localhost/account/reset" in to_owner.body
        assert db.session.scalars(sa.select(PendingRegistration.email)).all() == ["someone.new@example.com"]


def test_a_look_alike_spelling_of_a_taken_address_makes_no_second_account(
    app: Flask, users: dict[str, int]
) -> None:
    register(app.test_client(), email="ｃustomer@ｅxample.com")
    assert user_count(app) == len(users)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PendingRegistration)) == 0
        kinds = db.session.scalars(sa.select(OutboxMessage.kind)
                                   .where(OutboxMessage.to_address == "customer@example.com")).all()
        assert kinds == ["registration_existing"]


def test_of_two_links_for_one_address_only_the_first_opened_makes_an_account(app: Flask) -> None:
    register(app.test_client())
    first = emailed_link(app, "new.person@example.com")
    register(app.test_client(), password="another long passphrase here")
    second = emailed_link(app, "new.person@example.com")
    assert first != second
    browser = app.test_client()
    assert browser.post(second, data={"password": "another long passphrase here",
                                      "csrf_token": csrf_token(browser, second)}).status_code == 302
    late = app.test_client()
    assert late.get(first).status_code == 404
    assert user_count(app) == 1


def test_a_link_opened_with_another_password_makes_no_account(app: Flask) -> None:
    """Someone registers the victim's address with their own password; the victim registers too and
    opens the first email. Without the attacker's password that link makes nothing."""
    register(app.test_client(), password="the attacker's own passphrase")
    attackers = emailed_link(app, "new.person@example.com")
    register(app.test_client())  # the victim, with their own password
    victim = app.test_client()
    page = victim.get(attackers)
    assert page.status_code == 200 and 'type="password"' in page.get_data(as_text=True)
    for password in ["a long and unusual passphrase", ""]:
        response = victim.post(attackers, data={"password": password,
                                                "csrf_token": csrf_token(victim, attackers)})
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert "not the password you chose" in html or "Enter the password you chose" in html
    assert user_count(app) == 0
    assert victim.get("/account").status_code == 302  # not signed in
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PendingRegistration)) == 2
    # The victim's own link, with their password, still works.
    own = emailed_link(app, "new.person@example.com")
    assert victim.post(own, data={"password": "a long and unusual passphrase",
                                  "csrf_token": csrf_token(victim, own)}).status_code == 302
    assert user_count(app) == 1


def test_guessing_the_password_of_a_link_is_limited_like_sign_in(app: Flask) -> None:
    register(app.test_client())
    link = emailed_link(app, "new.person@example.com")
    guesses = [app.test_client() for _ in range(6)]
    answers = [g.post(link, data={"password": f"guess number {n}", "csrf_token": csrf_token(g, link)})
               .status_code for n, g in enumerate(guesses)]
    assert answers[:5] == [200] * 5 and answers[5] == 429
    assert user_count(app) == 0


def test_a_registration_link_expires(app: Flask) -> None:
    import datetime as dt

    import time_machine

    register(app.test_client())
    link = emailed_link(app, "new.person@example.com")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=services.REGISTRATION_LINK_HOURS, minutes=1)
    with time_machine.travel(later):
        browser = app.test_client()
        response = browser.get(link)
        assert response.status_code == 404 and "register again" in response.get_data(as_text=True)
    assert user_count(app) == 0


def test_register_refuses_common_short_and_overlong_passwords(app: Flask, client: FlaskClient) -> None:
    for password, message in [
        ("password1234", "too common"),
        ("qwertyuiop123", "too common"),
        ("Short1!", "at least 12"),
        ("x" * 129, "129"),  # over the limit: the form keeps the user's input and says why
    ]:
        response = register(client, password=password)
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        if message == "129":
            assert "Field cannot be longer than 128 characters" in html
        else:
            assert message in html, password
        # What the user typed (except the password) is shown again.
        assert 'value="New  Person"' in html or 'value="New Person"' in html
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_register_refuses_minors_and_future_birth_dates(client: FlaskClient) -> None:
    assert "18 or older" in register(client, date_of_birth="2015-01-01").get_data(as_text=True)
    assert "future" in register(client, date_of_birth="2999-01-01").get_data(as_text=True)


def test_wrong_email_and_wrong_password_get_the_same_answer(
    app: Flask, client: FlaskClient, users: dict[str, int]
) -> None:
    def attempt(email: str, password: str) -> str:
        response = client.post("/account/sign-in", data={
            "email": email, "password": password, "csrf_token": csrf_token(client)})
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        return re.sub(r'value="[^"]*"', "", html)  # the token and typed email differ, nothing else

    unknown = attempt("nobody@example.com", TEST_PASSWORD)
    wrong = attempt("customer@example.com", "not the password at all")
    assert unknown.replace("nobody@example.com", "") == wrong.replace("customer@example.com", "")
    assert "The email address or password is not correct." in unknown
    with app.app_context():
        failures = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "sign_in.failed")).all()
        assert len(failures) == 2
        assert all("not the password" not in f.details for f in failures)


def test_sign_in_creates_a_fresh_session_no_fixation(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    client.get("/account/sign-in")
    with client.session_transaction() as session:
        session["sid"] = "attacker-chosen-value"
        session["planted"] = "x"
    sign_in(client, app, "customer@example.com")
    with client.session_transaction() as session:
        assert session["sid"] != "attacker-chosen-value"
        assert "planted" not in session


def test_sign_out_revokes_the_session_so_a_copied_cookie_fails(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("customer")
    assert client.get("/account/profile").status_code == 200
    with client.session_transaction() as session:
        stolen = dict(session)
    response = client.post("/account/sign-out", data={"csrf_token": csrf_token(client, "/account")})
    assert response.status_code == 302
    thief = app.test_client()
    with thief.session_transaction() as session:
        session.update(stolen)
    response = thief.get("/account/profile")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]
    assert "sign_out" in actions(app)


def test_changing_password_ends_other_sessions(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    laptop, phone = signed_in("customer"), signed_in("customer")
    response = laptop.post("/account/password", data={
        "current_password": TEST_PASSWORD,
        "new_password": "another long passphrase here",
        "csrf_token": csrf_token(laptop, "/account/password"),
    })
    assert response.status_code == 302
    assert laptop.get("/account/profile").status_code == 200
    assert phone.get("/account/profile").status_code == 302
    assert "password.changed" in actions(app)


def test_wrong_current_password_changes_nothing(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    with app.app_context():
        before = db.session.get(User, users["customer"]).password_hash
    response = client.post("/account/password", data={
        "current_password": "wrong wrong wrong", "new_password": "another long passphrase here",
        "csrf_token": csrf_token(client, "/account/password")})
    assert "current password is not correct" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, users["customer"]).password_hash == before


def test_disabling_an_account_ends_its_sessions(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    from shop.accounts import services

    client = signed_in("customer")
    with app.app_context():
        admin = db.session.get(User, users["admin"])
        services.set_active(db.session.get(User, users["customer"]), False, actor=admin)
    assert client.get("/account/profile").status_code == 302
    assert sign_in(app.test_client(), app, "customer@example.com").status_code == 200
    assert "user.disabled" in actions(app)


def test_staff_must_pass_the_second_factor(app: Flask, users: dict[str, int]) -> None:
    client = app.test_client()
    response = client.post("/account/sign-in", data={
        "email": "pharmacist@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    assert response.status_code == 302 and "/account/sign-in/verify" in response.headers["Location"]
    # Password alone is not a sign-in.
    assert client.get("/account").status_code == 302
    response = client.post("/account/sign-in/verify", data={
        "code": "000000", "csrf_token": csrf_token(client, "/account/sign-in/verify")})
    assert "not correct" in response.get_data(as_text=True)
    code = totp_now()
    response = client.post("/account/sign-in/verify", data={
        "code": code, "csrf_token": csrf_token(client, "/account/sign-in/verify")})
    assert response.status_code == 302
    assert client.get("/account").status_code == 200
    # The same code cannot be used twice (the very same code: a fresh one could belong to the next
    # 30-second step if the clock moved on meanwhile).
    other = app.test_client()
    other.post("/account/sign-in", data={
        "email": "pharmacist@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(other)})
    response = other.post("/account/sign-in/verify", data={
        "code": code, "csrf_token": csrf_token(other, "/account/sign-in/verify")})
    assert "already used" in response.get_data(as_text=True)


def test_staff_without_two_factor_enrol_before_anything_else(
    app: Flask, make_user: Callable[..., int]
) -> None:
    user_id = make_user("newpharmacist@example.com", role="pharmacist")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.totp_enabled, user.totp_secret = False, None
        db.session.commit()
    client = app.test_client()
    response = client.post("/account/sign-in", data={
        "email": "newpharmacist@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(client)})
    assert "/account/sign-in/enrol" in response.headers["Location"]
    page = client.get("/account/sign-in/enrol").get_data(as_text=True)
    assert "<svg" in page  # the QR code, drawn on our server
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    response = client.post("/account/sign-in/enrol", data={
        "code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(client, "/account/sign-in/enrol")})
    html = response.get_data(as_text=True)
    codes = re.findall(r"<li><code>([0-9a-f-]+)</code></li>", html)
    assert len(codes) == 10
    assert client.get("/account").status_code == 200
    # A recovery code works once in place of the app.
    second = app.test_client()
    second.post("/account/sign-in", data={
        "email": "newpharmacist@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(second)})
    ok = second.post("/account/sign-in/verify", data={
        "code": codes[0], "csrf_token": csrf_token(second, "/account/sign-in/verify")})
    assert ok.status_code == 302
    third = app.test_client()
    third.post("/account/sign-in", data={
        "email": "newpharmacist@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(third)})
    again = third.post("/account/sign-in/verify", data={
        "code": codes[0], "csrf_token": csrf_token(third, "/account/sign-in/verify")})
    assert again.status_code == 200
    assert "two_factor.enabled" in actions(app)


def test_customers_may_turn_on_two_factor(app: Flask, signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("customer")
    page = client.get("/account/two-factor").get_data(as_text=True)
    secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page).group(1)
    client.post("/account/two-factor", data={
        "code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(client, "/account/two-factor")})
    fresh = app.test_client()
    response = fresh.post("/account/sign-in", data={
        "email": "customer@example.com", "password": TEST_PASSWORD, "csrf_token": csrf_token(fresh)})
    assert "/account/sign-in/verify" in response.headers["Location"]


def test_idle_timeout_is_shorter_for_staff(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    import datetime as dt

    import time_machine

    customer, pharmacist = signed_in("customer"), signed_in("pharmacist")
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now + dt.timedelta(minutes=20)):
        assert pharmacist.get("/account").status_code == 302  # staff: 15 minutes idle
        assert customer.get("/account").status_code == 200  # customers: 60 minutes
    # Kept busy every 50 minutes, a customer's session still ends 12 hours after sign-in.
    for minutes in range(70, 13 * 60, 50):
        with time_machine.travel(now + dt.timedelta(minutes=minutes)):
            expected = 200 if minutes < 12 * 60 else 302
            assert customer.get("/account").status_code == expected, minutes
    with app.app_context():
        assert db.session.scalar(
            sa.select(sa.func.count()).select_from(UserSession).where(UserSession.revoked_at.is_(None))
        ) == 0


def test_registration_emails_to_one_address_are_limited_alike_for_taken_and_new_addresses(
    app: Flask, users: dict[str, int]
) -> None:
    def attempt(email: str, ip: str, **overrides: str) -> int:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = ip
        return register(client, email=email, **overrides).status_code

    for email in ("customer@example.com", "someone.new@example.com"):
        assert attempt(email, "198.51.100.1", password="password1234") == 200  # refused form: not counted
        assert [attempt(email.upper(), f"198.51.100.{n}") for n in range(2, 6)] == [200, 200, 200, 429]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 6
