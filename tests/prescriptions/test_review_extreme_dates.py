"""Dates at the ends of the calendar typed into the pharmacist's review form are refused, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.catalog.models import Strength
from shop.extensions import db
from shop.prescriptions.models import Prescription
from tests.conftest import csrf_token


@pytest.mark.parametrize(("date_written", "expires_on", "message"), [
    ("9999-12-31", "", "The date written cannot be in the future."),
    ("0001-01-01", "", "reject it as expired."),
    ("0001-01-01", "9999-12-31", "Approved"),
])
def test_a_date_written_at_the_end_of_the_calendar_is_a_form_error(
    app: Flask, signed_in: Callable[[str], FlaskClient], upload_prescription: Callable[..., int],
    date_written: str, expires_on: str, message: str,
) -> None:
    pid = upload_prescription()
    pharmacist = signed_in("pharmacist")
    token = csrf_token(pharmacist, "/pharmacy/queue")
    pharmacist.post(f"/pharmacy/prescriptions/{pid}/claim", data={"csrf_token": token})
    with app.app_context():
        strength = db.session.scalars(sa.select(Strength).where(Strength.slug == "50-mg")).one()
    form = {
        "csrf_token": token, "patient_name": "Customer", "patient_date_of_birth": "1980-01-01",
        "product_id": str(strength.product_id), "strength_id": str(strength.id),
        "quantity_authorised": "90", "refills": "1", "units_per_day": "1",
        "directions": "One tablet daily", "prescriber_name": "Dr Lee Park",
        "prescriber_address": "1 Clinic Way", "prescriber_phone": "503-555-0199",
        "prescriber_npi": "1234567893", "date_written": date_written, "expires_on": expires_on,
        "verification_method": "electronic",
    }
    response = pharmacist.post(f"/pharmacy/prescriptions/{pid}/approve", data=form, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code < 500 and message in page
    with app.app_context():
        status = db.session.get(Prescription, pid).status
    assert status == ("approved" if message == "Approved" else "in_review")
