"""The patient profile: details, addresses and health entries, each validated and audited."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, ProfileEntry, User
from shop.audit import AuditEvent
from shop.extensions import db
from tests.conftest import csrf_token


def audit_actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


def test_profile_edit_saves_and_is_audited(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    response = client.post("/account/profile", data={
        "legal_name": "Casey  Jordan", "date_of_birth": "1981-02-03", "phone": "+1 503 555 0100",
        "consent": "y", "csrf_token": csrf_token(client, "/account/profile")})
    assert response.status_code == 302
    assert "Your profile is saved." in client.get("/account/profile").get_data(as_text=True)
    with app.app_context():
        user = db.session.get(User, users["customer"])
        assert (user.legal_name, user.date_of_birth.isoformat(), user.phone) == (
            "Casey Jordan", "1981-02-03", "+1 503 555 0100")
        assert user.privacy_consent_at is not None
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "profile.updated")).one()
        assert set(event.details_dict["fields"]) == {"legal_name", "date_of_birth", "phone",
                                                     "privacy_consent"}
        assert "Casey" not in event.details  # the log names fields, not their values


def test_profile_errors_keep_input_and_save_nothing(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    response = client.post("/account/profile", data={
        "legal_name": "Kept Name", "date_of_birth": "2999-01-01", "phone": "12",
        "csrf_token": csrf_token(client, "/account/profile")})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "cannot be in the future" in html
    assert 'value="Kept Name"' in html
    assert 'aria-invalid="true"' in html
    with app.app_context():
        assert db.session.get(User, users["customer"]).legal_name != "Kept Name"
    assert "profile.updated" not in audit_actions(app)


def test_health_entries_add_and_remove(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    token = csrf_token(client, "/account/profile")
    for kind, text in [("allergy", "Penicillin"), ("medication", "Oxycodone 5 mg as needed"),
                       ("condition", "Hepatitis C")]:
        response = client.post(f"/account/health/{kind}", data={f"{kind}-text": text, "csrf_token": token})
        assert response.status_code == 302
    page = client.get("/account/profile").get_data(as_text=True)
    for text in ("Penicillin", "Oxycodone 5 mg as needed", "Hepatitis C"):
        assert text in page
    # Empty and duplicate entries are refused with a message, nothing added.
    response = client.post("/account/health/allergy", data={"allergy-text": "  ", "csrf_token": token})
    assert response.status_code == 422 and "Type the allergy" in response.get_data(as_text=True)
    response = client.post("/account/health/allergy", data={"allergy-text": "penicillin",
                                                            "csrf_token": token})
    assert "already on your list" in response.get_data(as_text=True)
    with app.app_context():
        entry = db.session.scalars(sa.select(ProfileEntry).where(ProfileEntry.kind == "medication")).one()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ProfileEntry)) == 3
    assert client.post(f"/account/health/{entry.id}/delete", data={"csrf_token": token}).status_code == 302
    assert "Oxycodone" not in client.get("/account/profile").get_data(as_text=True)
    actions = audit_actions(app)
    assert actions.count("profile.entry_added") == 3 and "profile.entry_removed" in actions


def test_addresses_default_edit_and_delete(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    token = csrf_token(client, "/account/addresses/new")
    base = {"recipient": "Casey", "city": "Portland", "state": "or", "country": "US", "csrf_token": token}
    client.post("/account/addresses/new", data={**base, "line1": "1 First St", "postal_code": "97204"})
    client.post("/account/addresses/new", data={**base, "line1": "2 Second St", "postal_code": "97205-1234"})
    with app.app_context():
        first, second = db.session.scalars(sa.select(Address).order_by(Address.id)).all()
        assert first.is_default and not second.is_default  # the first address becomes the default
        assert first.state == "OR"
    client.post(f"/account/addresses/{second.id}/default", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Address, second.id).is_default
        assert not db.session.get(Address, first.id).is_default
    # A bad ZIP is refused with a message and changes nothing.
    response = client.post(f"/account/addresses/{first.id}", data={**base, "line1": "9 Changed St",
                                                                     "postal_code": "ABCDE"})
    assert "5-digit ZIP" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Address, first.id).line1 == "1 First St"
    client.post(f"/account/addresses/{second.id}/delete", data={"csrf_token": token})
    with app.app_context():
        remaining = db.session.scalars(sa.select(Address)).all()
        assert [a.id for a in remaining] == [first.id] and remaining[0].is_default
    actions = audit_actions(app)
    assert {"address.added", "address.made_default", "address.deleted"} <= set(actions)


def test_address_outside_the_us_is_refused(signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("customer")
    response = client.post("/account/addresses/new", data={
        "recipient": "A", "line1": "1 Rue", "city": "Paris", "state": "IDF", "postal_code": "75001",
        "country": "FR", "csrf_token": csrf_token(client, "/account/addresses/new")})
    assert response.status_code == 200
    assert "Not a valid choice" in response.get_data(as_text=True)


def test_another_customers_objects_are_not_found(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    with app.app_context():
        theirs = Address(user_id=users["other_customer"], recipient="O", line1="5 Oak St",
                         city="Bend", state="OR", postal_code="97701", is_default=True)
        entry = ProfileEntry(user_id=users["other_customer"], kind="allergy", text="Sulfa")
        db.session.add_all([theirs, entry])
        db.session.commit()
        address_id, entry_id = theirs.id, entry.id
    client = signed_in("customer")
    token = csrf_token(client, "/account")
    assert client.get(f"/account/addresses/{address_id}").status_code == 404
    assert client.post(f"/account/addresses/{address_id}/delete", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/account/health/{entry_id}/delete", data={"csrf_token": token}).status_code == 404
    assert "5 Oak St" not in client.get("/account/addresses").get_data(as_text=True)
    assert "Sulfa" not in client.get("/account/profile").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Address, address_id) is not None
        assert db.session.get(ProfileEntry, entry_id) is not None


@pytest.mark.parametrize("zip_code", ["97204-abcd", "٩٧٢٠٤", "97²04", "9720", "97204-12345", "97204 1234"])
def test_a_zip_code_that_is_not_five_ascii_digits_is_refused(
    app: Flask, signed_in: Callable[[str], FlaskClient], zip_code: str
) -> None:
    client = signed_in("customer")
    token = csrf_token(client, "/account/addresses/new")
    response = client.post("/account/addresses/new", data={
        "recipient": "Casey", "line1": "1 First St", "city": "Portland", "state": "OR", "country": "US",
        "postal_code": zip_code, "csrf_token": token})
    assert "5-digit ZIP" in response.get_data(as_text=True)  # the form again, with the message
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Address)) == 0
