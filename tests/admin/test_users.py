"""Admin user management: search, staff accounts by invitation, roles and their guards, disabling,
the audit trail, and that none of it is open to customers or pharmacists."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, ProfileEntry, User
from shop.accounts.services import FormErrors
from shop.admin import users as user_admin
from shop.audit import AuditEvent
from shop.extensions import db
from shop.notifications.models import OutboxMessage
from tests.conftest import csrf_token, sign_in

NEW_PASSWORD = "lighthouse kettle orbit meadow"


def post(client: FlaskClient, url: str, data: dict[str, str] | None = None):
    return client.post(url, data={**(data or {}), "csrf_token": csrf_token(client, "/admin/users")})


def account(app: Flask, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def audit_rows(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)
                                       .order_by(AuditEvent.id)))
        db.session.expunge_all()
        return rows


def listed_emails(html: str) -> list[str]:
    return re.findall(r'<th scope="row"><a href="/admin/users/\d+">([^<]+)</a></th>', html)


# Finding accounts -------------------------------------------------------------------------------


def test_search_finds_accounts_by_part_of_the_email_or_the_name(
    signed_in: Callable[[str], FlaskClient], make_user: Callable[..., int]
) -> None:
    make_user("jane.doe@clinic.example", legal_name="Marguerite Okafor")
    admin = signed_in("admin")

    assert listed_emails(admin.get("/admin/users?q=CLINIC.ex").get_data(as_text=True)) == [
        "jane.doe@clinic.example"]
    assert listed_emails(admin.get("/admin/users?q=okaf").get_data(as_text=True)) == [
        "jane.doe@clinic.example"]
    assert listed_emails(admin.get("/admin/users?role=pharmacist").get_data(as_text=True)) == [
        "pharmacist@example.com"]
    everyone = listed_emails(admin.get("/admin/users").get_data(as_text=True))
    assert len(everyone) == 5 and everyone[0] == "jane.doe@clinic.example"  # newest first
    # LIKE wildcards typed into the box are taken literally.
    assert "No accounts match." in admin.get("/admin/users?q=%25").get_data(as_text=True)


def test_the_list_pages_through_every_account_once(
    signed_in: Callable[[str], FlaskClient], make_user: Callable[..., int]
) -> None:
    for n in range(user_admin.PAGE_SIZE + 3):
        make_user(f"shopper{n:02d}@example.org")
    admin = signed_in("admin")
    first = admin.get("/admin/users?q=example.org").get_data(as_text=True)
    assert len(listed_emails(first)) == user_admin.PAGE_SIZE
    older = re.search(r'href="(/admin/users\?[^"]*before=\d+[^"]*)"', first).group(1).replace("&amp;", "&")
    second = admin.get(older).get_data(as_text=True)
    assert listed_emails(second) == ["shopper02@example.org", "shopper01@example.org", "shopper00@example.org"]
    assert "Older accounts" not in second


def test_the_account_page_shows_account_fields_but_no_health_data(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        db.session.add_all([
            ProfileEntry(user=customer, kind="allergy", text="Penicillin"),
            ProfileEntry(user=customer, kind="condition", text="Hepatitis C"),
            Address(user=customer, recipient="C", line1="77 Harbor Lane", city="Portland", state="OR",
                    postal_code="97204"),
        ])
        db.session.commit()
    sign_in(app.test_client(), app, "customer@example.com")
    page = signed_in("admin").get(f"/admin/users/{users['customer']}").get_data(as_text=True)
    for shown in ("customer@example.com", "Customer", "Active", "Two-factor sign-in", "Off",
                  "<code>sign_in.succeeded</code>"):
        assert shown in page
    assert "Never" not in page  # the customer has signed in
    for hidden in ("Penicillin", "Hepatitis", "Harbor Lane", "1980"):
        assert hidden not in page


# Staff accounts ---------------------------------------------------------------------------------


def invitation_link(app: Flask, to: str) -> str:
    with app.app_context():
        message = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.to_address == to)).one()
        assert message.kind == "staff_invitation"
        return re.search(r"http://localhost(/account/reset/\S+)", message.body).group(1)


def create_staff(admin: FlaskClient, email: str, name: str = "Nadia Brennan", role: str = "pharmacist"):
    return admin.post("/admin/users/new", data={
        "email": email, "legal_name": name, "role": role,
        "csrf_token": csrf_token(admin, "/admin/users/new")})


def test_a_new_staff_account_chooses_its_password_by_email_link_then_enrols_in_two_factor(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    admin = signed_in("admin")
    assert 'type="password"' not in admin.get("/admin/users/new").get_data(as_text=True)

    response = create_staff(admin, " Nadia.Brennan@Example.com ")
    assert response.status_code == 302
    with app.app_context():
        staff = db.session.scalars(sa.select(User).where(User.email == "nadia.brennan@example.com")).one()
        assert (staff.role, staff.active, staff.totp_enabled, staff.date_of_birth) == (
            "pharmacist", True, False, None)
        assert response.headers["Location"] == f"/admin/users/{staff.id}"
    [created] = audit_rows(app, "account.created")
    assert created.actor_email == "admin@example.com"
    assert created.details_dict["role"] == "pharmacist" and created.details_dict["invited"] is True

    link = invitation_link(app, "nadia.brennan@example.com")
    newcomer = app.test_client()
    assert newcomer.get(link).status_code == 200
    response = newcomer.post(link, data={"password": NEW_PASSWORD, "csrf_token": csrf_token(newcomer, link)})
    assert response.status_code == 302
    # Staff sign in with two factors: the password step leads to enrolment, not into the shop.
    response = newcomer.post("/account/sign-in", data={
        "email": "nadia.brennan@example.com", "password": NEW_PASSWORD, "csrf_token": csrf_token(newcomer)})
    assert response.status_code == 302 and "/account/sign-in/enrol" in response.headers["Location"]
    assert newcomer.get("/pharmacy/queue").status_code == 302
    assert newcomer.get(link).status_code == 404  # the link worked once


def test_the_invitation_link_outlasts_a_reset_link_but_expires(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    create_staff(signed_in("admin"), "late.starter@example.com", role="admin")
    link = invitation_link(app, "late.starter@example.com")
    visitor = app.test_client()
    now = dt.datetime.now(dt.UTC)
    with time_machine.travel(now + dt.timedelta(hours=user_admin.DEFAULT_INVITATION_HOURS - 1)):
        assert visitor.get(link).status_code == 200
    with time_machine.travel(now + dt.timedelta(hours=user_admin.DEFAULT_INVITATION_HOURS + 1)):
        assert visitor.get(link).status_code == 404


def newest_link(app: Flask, to: str) -> str:
    with app.app_context():
        body = db.session.scalars(sa.select(OutboxMessage.body).where(OutboxMessage.to_address == to)
                                  .order_by(OutboxMessage.id.desc())).first()
    return re.search(r"http://localhost(/account/reset/\S+)", body).group(1)


def status_cell(html: str, email: str) -> str:
    row = re.search(rf"<tr>\s*<th scope=\"row\"><a [^>]*>{re.escape(email)}</a></th>(.*?)</tr>", html, re.S)
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)[2]


def flash_after(client: FlaskClient, response) -> str:
    assert response.status_code == 302
    return client.get(response.headers["Location"]).get_data(as_text=True)


def test_an_invited_account_is_pending_until_its_first_password_which_is_welcomed(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    admin = signed_in("admin")
    create_staff(admin, "nadia.brennan@example.com")
    with app.app_context():
        staff = db.session.scalars(sa.select(User).where(User.email == "nadia.brennan@example.com")).one()
        expires = staff.created_at + dt.timedelta(hours=user_admin.DEFAULT_INVITATION_HOURS)
    assert status_cell(admin.get("/admin/users").get_data(as_text=True),
                       "nadia.brennan@example.com") == "Invitation pending"
    page = admin.get(f"/admin/users/{staff.id}").get_data(as_text=True)
    assert f"Invitation pending, expires <time datetime=\"{expires.isoformat()[:16]}" in page
    assert ">Active<" not in page
    assert "<button type=\"submit\">Resend invitation</button>" in page

    newcomer = app.test_client()
    link = invitation_link(app, "nadia.brennan@example.com")
    assert "Welcome! Choose the password you will sign in with" in newcomer.get(link).get_data(as_text=True)
    after = flash_after(newcomer, newcomer.post(link, data={
        "password": NEW_PASSWORD, "csrf_token": csrf_token(newcomer, link)}))
    assert "Your password is set. Welcome to" in after and "two-factor" in after
    assert "Your password is changed" not in after

    assert status_cell(admin.get("/admin/users").get_data(as_text=True), "nadia.brennan@example.com") == "Active"
    page = admin.get(f"/admin/users/{staff.id}").get_data(as_text=True)
    assert "Invitation" not in page and "Resend invitation" not in page
    # Later resets are changes, as before.
    newcomer.post("/account/reset", data={"email": "nadia.brennan@example.com",
                                          "csrf_token": csrf_token(newcomer, "/account/reset")})
    reset = newest_link(app, "nadia.brennan@example.com")
    after = flash_after(newcomer, newcomer.post(reset, data={
        "password": "another long passphrase here", "csrf_token": csrf_token(newcomer, reset)}))
    assert "Your password is changed" in after and "Welcome" not in after


def test_resending_an_invitation_sends_a_new_link_and_the_old_one_stops_working(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    admin = signed_in("admin")
    create_staff(admin, "late.starter@example.com", role="admin")
    with app.app_context():
        staff_id = db.session.scalars(sa.select(User.id).where(User.email == "late.starter@example.com")).one()
    old_link = invitation_link(app, "late.starter@example.com")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=user_admin.DEFAULT_INVITATION_HOURS + 1)
    with time_machine.travel(later):
        admin = signed_in("admin")  # the earlier session has timed out meanwhile
        assert status_cell(admin.get("/admin/users").get_data(as_text=True),
                           "late.starter@example.com") == "Invitation expired"
        assert "Invitation expired <time" in admin.get(f"/admin/users/{staff_id}").get_data(as_text=True)
        page = flash_after(admin, post(admin, f"/admin/users/{staff_id}/invitation"))
        assert "We emailed late.starter@example.com a new link" in page
        assert "Invitation pending, expires" in page
        new_link = newest_link(app, "late.starter@example.com")
        assert new_link != old_link
        visitor = app.test_client()
        assert visitor.get(old_link).status_code == 404
        assert visitor.get(new_link).status_code == 200
        # A second resend ends the first resent link too.
        post(admin, f"/admin/users/{staff_id}/invitation")
        assert visitor.get(new_link).status_code == 404
        newest = newest_link(app, "late.starter@example.com")
        response = visitor.post(newest, data={"password": NEW_PASSWORD, "csrf_token": csrf_token(visitor, newest)})
        assert "Your password is set" in flash_after(visitor, response)
        # Once the password is chosen there is nothing to resend.
        refused = post(admin, f"/admin/users/{staff_id}/invitation")
        assert refused.status_code == 422
        assert "has already chosen a password" in refused.get_data(as_text=True)
    [first, second] = audit_rows(app, "user.invitation_resent")
    assert first.actor_email == "admin@example.com" and first.object_id == str(staff_id)
    assert second.details_dict["earlier_links_ended"] == 1
    with app.app_context():
        messages = db.session.scalars(sa.select(OutboxMessage.body)
                                      .where(OutboxMessage.to_address == "late.starter@example.com")).all()
    assert len(messages) == 3 and "no longer works" in messages[-1]


def test_the_staff_account_form_refuses_bad_input_and_saves_nothing(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    admin = signed_in("admin")
    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.count()).select_from(User))

    response = create_staff(admin, "new@example.com", name="  ")
    assert response.status_code == 422
    assert "Enter their full legal name." in response.get_data(as_text=True)

    response = create_staff(admin, "not an address", role="customer")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="email-error"' in page and 'id="role-error"' in page
    assert "Choose pharmacist or admin." in page

    response = create_staff(admin, "Customer@Example.com")
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)

    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == before
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
    assert audit_rows(app, "account.created") == []


# Roles ----------------------------------------------------------------------------------------------


def test_granting_and_revoking_roles_changes_the_one_role_and_ends_sessions(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    customer_session = signed_in("customer")
    admin = signed_in("admin")
    url = f"/admin/users/{users['customer']}/role"

    assert post(admin, url, {"role": "pharmacist"}).status_code == 302
    assert account(app, users["customer"]).role == "pharmacist"
    assert customer_session.get("/account").status_code == 302  # signed out
    page = admin.get(f"/admin/users/{users['customer']}").get_data(as_text=True)
    assert "Grant admin role (replaces pharmacist)" in page
    assert "Granting admin to a pharmacist makes them an admin instead" in page

    # The new pharmacist has no second factor yet: signing in leads to enrolment.
    response = sign_in(app.test_client(), app, "customer@example.com")
    assert "/account/sign-in/enrol" in response.headers["Location"]

    assert post(admin, url, {"role": "admin"}).status_code == 302
    assert account(app, users["customer"]).role == "admin"
    assert post(admin, url, {"role": "customer"}).status_code == 302
    assert account(app, users["customer"]).role == "customer"
    # Granting a role the account already has changes (and records) nothing.
    assert post(admin, url, {"role": "customer"}).status_code == 302

    changes = audit_rows(app, "user.role_changed")
    assert [(e.details_dict["old_role"], e.details_dict["new_role"]) for e in changes] == [
        ("customer", "pharmacist"), ("pharmacist", "admin"), ("admin", "customer")]
    assert {(e.actor_email, e.object_id) for e in changes} == {("admin@example.com", str(users["customer"]))}
    assert changes[0].details_dict["sessions_ended"] == 1


def test_an_unknown_role_is_refused(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    response = post(signed_in("admin"), f"/admin/users/{users['pharmacist']}/role", {"role": "superuser"})
    assert response.status_code == 422
    assert "Role must be one of customer, pharmacist, admin." in response.get_data(as_text=True)
    assert account(app, users["pharmacist"]).role == "pharmacist"


def test_an_admin_cannot_demote_or_disable_themselves(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int], make_user: Callable[..., int]
) -> None:
    make_user("second.admin@example.com", role="admin")  # so the last-admin rule is not what stops it
    admin = signed_in("admin")
    me = users["admin"]
    page = admin.get(f"/admin/users/{me}").get_data(as_text=True)
    assert "You cannot remove your own admin role" in page and "Revoke admin role" not in page

    for role in ("customer", "pharmacist"):
        response = post(admin, f"/admin/users/{me}/role", {"role": role})
        assert response.status_code == 422
        assert "You cannot remove the admin role from your own account" in response.get_data(as_text=True)
    response = post(admin, f"/admin/users/{me}/disable")
    assert response.status_code == 422
    assert "You cannot disable your own account" in response.get_data(as_text=True)

    me_now = account(app, me)
    assert (me_now.role, me_now.active) == ("admin", True)
    assert audit_rows(app, "user.role_changed") == [] and audit_rows(app, "user.disabled") == []
    assert admin.get("/admin/users").status_code == 200  # still signed in


def test_the_last_active_admin_is_never_demoted_or_disabled(
    app: Flask, users: dict[str, int], make_user: Callable[..., int]
) -> None:
    # Two admins act at the same moment: the first demotes the second, whose request, begun while
    # it was still an admin, then tries to demote or disable the first.
    second_id = make_user("second.admin@example.com", role="admin")
    with app.app_context():
        first, second = db.session.get(User, users["admin"]), db.session.get(User, second_id)
        assert user_admin.change_role(second, "pharmacist", actor=first)
        with pytest.raises(FormErrors, match=re.escape("admin@example.com is the last active admin")):
            user_admin.change_role(first, "customer", actor=second)
        with pytest.raises(FormErrors, match="last active admin"):
            user_admin.disable(first, actor=second)
    first_now = account(app, users["admin"])
    assert (first_now.role, first_now.active) == ("admin", True)
    assert len(audit_rows(app, "user.role_changed")) == 1


def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    app: Flask, users: dict[str, int], make_user: Callable[..., int]
) -> None:
    second_id = make_user("second.admin@example.com", role="admin")
    ready = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor_id: int, target_id: int) -> None:
        with app.app_context():
            actor, target = db.session.get(User, actor_id), db.session.get(User, target_id)
            ready.wait()
            try:
                user_admin.change_role(target, "customer", actor=actor)
                outcomes.append("changed")
            except FormErrors as error:
                outcomes.append(next(iter(error.errors.values())))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=demote, args=pair)
               for pair in ((users["admin"], second_id), (second_id, users["admin"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert outcomes.count("changed") == 1
    assert any("is the last active admin" in outcome for outcome in outcomes)
    with app.app_context():
        assert user_admin.active_admin_count() == 1


# Disabling --------------------------------------------------------------------------------------


def test_disabling_ends_the_sessions_and_blocks_sign_in_until_enabled(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    pharmacist_session = signed_in("pharmacist")
    assert pharmacist_session.get("/pharmacy/queue").status_code == 200
    admin = signed_in("admin")
    target = users["pharmacist"]

    assert post(admin, f"/admin/users/{target}/disable").status_code == 302
    assert not account(app, target).active
    response = pharmacist_session.get("/pharmacy/queue")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]
    assert sign_in(app.test_client(), app, "pharmacist@example.com").status_code == 200  # refused
    assert "Disabled: cannot sign in" in admin.get(f"/admin/users/{target}").get_data(as_text=True)

    assert post(admin, f"/admin/users/{target}/enable").status_code == 302
    assert account(app, target).active
    assert sign_in(app.test_client(), app, "pharmacist@example.com").status_code == 302

    [disabled] = audit_rows(app, "user.disabled")
    [enabled] = audit_rows(app, "user.enabled")
    assert disabled.actor_email == enabled.actor_email == "admin@example.com"
    assert disabled.object_id == enabled.object_id == str(target)
    assert disabled.details_dict == {"email": "pharmacist@example.com", "active_before": True,
                                     "active_after": False, "sessions_ended": 1}
    assert (enabled.details_dict["active_before"], enabled.details_dict["active_after"]) == (False, True)


def test_a_missing_account_is_404(signed_in: Callable[[str], FlaskClient]) -> None:
    admin = signed_in("admin")
    assert admin.get("/admin/users/999999").status_code == 404
    assert post(admin, "/admin/users/999999/disable").status_code == 404


# Access -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["customer", "pharmacist"])
def test_customers_and_pharmacists_cannot_reach_user_management(
    app: Flask, role: str, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in(role)
    me, admin_id = users[role], users["admin"]
    for url in ("/admin/users", f"/admin/users/{me}", "/admin/users/new"):
        assert client.get(url).status_code == 403, url
    token = csrf_token(client, "/account")
    attempts = [
        ("/admin/users/new", {"email": "sneaky@example.com", "legal_name": "Sneaky", "role": "admin"}),
        (f"/admin/users/{me}/role", {"role": "admin"}),
        (f"/admin/users/{admin_id}/role", {"role": "customer"}),
        (f"/admin/users/{admin_id}/disable", {}),
        (f"/admin/users/{me}/enable", {}),
    ]
    for url, data in attempts:
        assert client.post(url, data={**data, "csrf_token": token}).status_code == 403, url
    assert account(app, me).role == role
    admin = account(app, admin_id)
    assert (admin.role, admin.active) == ("admin", True)
    with app.app_context():
        assert db.session.scalar(sa.select(User).where(User.email == "sneaky@example.com")) is None
