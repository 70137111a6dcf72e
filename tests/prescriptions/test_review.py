"""Claims, safety checks, approval and rejection through the services and the pharmacist pages."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import ProfileEntry, User
from shop.audit import AuditEvent
from shop.catalog.models import Product, Strength
from shop.extensions import db
from shop.notifications.models import OutboxMessage
from shop.prescriptions import services
from shop.prescriptions.models import Prescription
from tests.conftest import csrf_token


def transcription(app: Flask, **changes: object) -> services.Transcription:
    with app.app_context():
        product = db.session.scalars(sa.select(Product).where(Product.slug == "naltrexone")).one()
        strength = db.session.scalars(sa.select(Strength).where(Strength.product_id == product.id,
                                                                Strength.slug == "50-mg")).one()
        values = dict(
            patient_name="Customer", patient_date_of_birth=dt.date(1980, 1, 1),
            product_id=product.id, strength_id=strength.id, quantity_authorised=30, refills=2,
            units_per_day=Decimal("1"), directions="One tablet daily", dispense_as_written=False,
            prescriber_name="Dr Lee Park", prescriber_address="1 Clinic Way, Portland OR",
            prescriber_phone="503-555-0199", prescriber_npi="1234567893",
            date_written=dt.date.today() - dt.timedelta(days=3), expires_on=None,
            verification_method="phone", verification_contact="Nurse Kim",
        )
        values.update(changes)
        return services.Transcription(**values)


def as_user(app: Flask, user_id: int) -> User:
    return db.session.get(User, user_id)


def test_claim_is_exclusive_and_lapses(app: Flask, users: dict[str, int], make_user: Callable[..., int],
                                      upload_prescription: Callable[..., int]) -> None:
    second = make_user("second@example.com", role="pharmacist")
    pid = upload_prescription()
    with app.app_context():
        assert services.claim(pid, as_user(app, users["pharmacist"]))
        assert not services.claim(pid, as_user(app, second))
        assert services.claim(pid, as_user(app, users["pharmacist"]))  # renewing your own claim
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)
    with time_machine.travel(later), app.app_context():
        assert services.claim(pid, as_user(app, second))
        assert db.session.get(Prescription, pid).claimed_by_id == second


def test_nobody_reviews_their_own_prescription(app: Flask, users: dict[str, int],
                                               upload_prescription: Callable[..., int]) -> None:
    # The customer uploads, then an admin makes the account a pharmacist: it still cannot claim it.
    pid = upload_prescription()
    with app.app_context():
        db.session.get(User, users["customer"]).role = "pharmacist"
        db.session.commit()
        assert not services.claim(pid, as_user(app, users["customer"]))
        assert db.session.get(Prescription, pid).status == "uploaded"
        assert services.claim(pid, as_user(app, users["pharmacist"]))


def test_concurrent_claims_have_exactly_one_winner(
    app: Flask, make_user: Callable[..., int], upload_prescription: Callable[..., int]
) -> None:
    pharmacists = [make_user(f"rph{n}@example.com", role="pharmacist") for n in range(8)]
    pid = upload_prescription()
    results: list[bool] = []
    barrier = threading.Barrier(len(pharmacists))

    def try_claim(user_id: int) -> None:
        with app.app_context():
            user = db.session.get(User, user_id)
            barrier.wait()
            results.append(services.claim(pid, user))
            db.session.remove()

    threads = [threading.Thread(target=try_claim, args=(u,)) for u in pharmacists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * 7 + [True]
    with app.app_context():
        prescription = db.session.get(Prescription, pid)
        assert prescription.status == "in_review" and prescription.claimed_by_id in pharmacists
        assert len([e for e in prescription.events if e.action == "claimed"]) == 1


def test_naltrexone_with_an_opioid_gives_a_severe_warning_and_needs_an_override(
    app: Flask, users: dict[str, int], upload_prescription: Callable[..., int]
) -> None:
    with app.app_context():
        db.session.add(ProfileEntry(user_id=users["customer"], kind="medication", text="Oxycodone 5 mg as needed"))
        db.session.commit()
    pid = upload_prescription()
    with app.app_context():
        pharmacist = as_user(app, users["pharmacist"])
        services.claim(pid, pharmacist)
        prescription = db.session.get(Prescription, pid)
        warnings = services.review_warnings(prescription, transcription(app))
        severe = [w for w in warnings if w.severity == "severe"]
        assert severe and any("opioid" in w.title.lower() for w in severe)
        assert any("Oxycodone" in w.detail for w in severe)
        with pytest.raises(services.ReviewError) as refused:
            services.approve(pid, pharmacist, transcription(app))
        assert "override_reason" in refused.value.errors
        assert db.session.get(Prescription, pid).status == "in_review"
        services.approve(pid, pharmacist, transcription(
            app, override_reason="Prescriber confirms oxycodone stopped 14 days ago; patient informed."))
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "prescription.approved")).one()
        assert event.details_dict["override"] is True


@pytest.mark.parametrize(
    ("profile", "changes", "kind"),
    [
        (("allergy", "Naltrexone (hives)"), {}, "allergy"),
        (None, {"units_per_day": Decimal("4")}, "dose"),  # 200 mg a day
        (None, {"patient_name": "Somebody Else"}, "identity"),
        (("condition", "Acute hepatitis"), {}, "contraindication"),
    ],
)
def test_safety_checks(app: Flask, users: dict[str, int], upload_prescription: Callable[..., int],
                       profile: tuple[str, str] | None, changes: dict, kind: str) -> None:
    if profile:
        with app.app_context():
            db.session.add(ProfileEntry(user_id=users["customer"], kind=profile[0], text=profile[1]))
            db.session.commit()
    pid = upload_prescription()
    with app.app_context():
        warnings = services.review_warnings(db.session.get(Prescription, pid), transcription(app, **changes))
        assert kind in {w.kind for w in warnings}


def test_no_warnings_for_a_clean_profile(app: Flask, users: dict[str, int],
                                         upload_prescription: Callable[..., int]) -> None:
    pid = upload_prescription()
    with app.app_context():
        assert services.review_warnings(db.session.get(Prescription, pid), transcription(app)) == []


def test_duplicate_therapy_warning(app: Flask, users: dict[str, int],
                                   upload_prescription: Callable[..., int]) -> None:
    first, second = upload_prescription(), upload_prescription()
    with app.app_context():
        pharmacist = as_user(app, users["pharmacist"])
        services.claim(first, pharmacist)
        services.approve(first, pharmacist, transcription(app))
        warnings = services.review_warnings(db.session.get(Prescription, second), transcription(app))
        assert [w.kind for w in warnings] == ["duplicate"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prescriber_npi": "1234567890"}, "prescriber_npi"),
        # Dates as days from today, counted when the test runs (not when it is collected: a run
        # may cross midnight).
        ({"date_written": 1}, "date_written"),
        ({"expires_on": -1}, "expires_on"),
        ({"date_written": -400}, "expires_on"),
        ({"verification_method": "phone", "verification_contact": ""}, "verification_contact"),
        ({"verification_method": "fax"}, "verification_method"),
        ({"quantity_authorised": 0}, "quantity_authorised"),
        ({"refills": 13}, "refills"),
        ({"directions": " "}, "directions"),
    ],
)
def test_bad_transcriptions_are_refused_and_change_nothing(
    app: Flask, users: dict[str, int], upload_prescription: Callable[..., int], changes: dict, field: str
) -> None:
    changes = {name: dt.date.today() + dt.timedelta(days=value) if name in ("date_written", "expires_on")
               else value for name, value in changes.items()}
    pid = upload_prescription()
    with app.app_context():
        pharmacist = as_user(app, users["pharmacist"])
        services.claim(pid, pharmacist)
        with pytest.raises(services.ReviewError) as refused:
            services.approve(pid, pharmacist, transcription(app, **changes))
        assert field in refused.value.errors
        prescription = db.session.get(Prescription, pid)
        assert prescription.status == "in_review" and prescription.quantity_authorised is None


def test_strength_must_belong_to_the_drug(app: Flask, users: dict[str, int],
                                          upload_prescription: Callable[..., int]) -> None:
    pid = upload_prescription()
    with app.app_context():
        other = db.session.scalars(sa.select(Strength).where(Strength.slug == "333-mg")).one()
        pharmacist = as_user(app, users["pharmacist"])
        services.claim(pid, pharmacist)
        with pytest.raises(services.ReviewError) as refused:
            services.approve(pid, pharmacist, transcription(app, strength_id=other.id))
        assert "strength_id" in refused.value.errors


def test_controlled_substances_cannot_be_approved(app: Flask, users: dict[str, int],
                                                  upload_prescription: Callable[..., int]) -> None:
    pid = upload_prescription()
    with app.app_context():
        db.session.execute(sa.update(Product).where(Product.slug == "naltrexone").values(controlled_substance=True))
        db.session.commit()
        pharmacist = as_user(app, users["pharmacist"])
        services.claim(pid, pharmacist)
        with pytest.raises(services.ReviewError) as refused:
            services.approve(pid, pharmacist, transcription(app))
        assert "controlled" in refused.value.errors["product_id"]
        services.reject(pid, pharmacist, "controlled_substance", "We cannot fill this online.")
        assert db.session.get(Prescription, pid).status == "rejected"


def test_approval_records_everything_and_notifies(app: Flask, users: dict[str, int],
                                                  upload_prescription: Callable[..., int]) -> None:
    pid = upload_prescription()
    with app.app_context():
        pharmacist = as_user(app, users["pharmacist"])
        services.claim(pid, pharmacist)
        prescription = services.approve(pid, pharmacist, transcription(app))
        assert prescription.status == "approved"
        assert prescription.quantity_total == 90 and prescription.quantity_remaining == 90
        assert prescription.expires_on == prescription.date_written + dt.timedelta(days=365)
        assert prescription.verification_contact == "Nurse Kim"
        assert [e.action for e in prescription.events] == ["uploaded", "claimed", "approved"]
        message = db.session.scalars(sa.select(OutboxMessage)).one()
        assert message.kind == "prescription_approved" and message.to_address == "customer@example.com"
        # Decided prescriptions cannot be decided again, nor claimed.
        assert not services.claim(pid, pharmacist)
        with pytest.raises(services.ReviewError):
            services.reject(pid, pharmacist, "other", "no")


def test_deciding_needs_the_claim(app: Flask, users: dict[str, int], make_user: Callable[..., int],
                                  upload_prescription: Callable[..., int]) -> None:
    pid = upload_prescription()
    other = make_user("other.rph@example.com", role="pharmacist")
    with app.app_context():
        services.claim(pid, as_user(app, users["pharmacist"]))
        with pytest.raises(services.ReviewError):
            services.approve(pid, as_user(app, other), transcription(app))
        with pytest.raises(services.ReviewError):
            services.reject(pid, as_user(app, other), "illegible", "blurred")
        assert db.session.get(Prescription, pid).status == "in_review"


def test_review_pages_end_to_end(app: Flask, signed_in: Callable[[str], FlaskClient],
                                 upload_prescription: Callable[..., int]) -> None:
    pid = upload_prescription()
    pharmacist, customer = signed_in("pharmacist"), signed_in("customer")
    queue = pharmacist.get("/pharmacy/queue").get_data(as_text=True)
    assert f"#{pid}" in queue and "Waiting: <strong>1</strong>" in queue
    token = csrf_token(pharmacist, "/pharmacy/queue")
    response = pharmacist.post(f"/pharmacy/prescriptions/{pid}/claim", data={"csrf_token": token})
    assert response.headers["Location"].endswith(f"/pharmacy/prescriptions/{pid}")
    page = pharmacist.get(f"/pharmacy/prescriptions/{pid}").get_data(as_text=True)
    assert f"/prescriptions/{pid}/files/" in page and "Transcribe and verify" in page
    with app.app_context():
        strength = db.session.scalars(sa.select(Strength).where(Strength.slug == "50-mg")).one()
    form = {
        "csrf_token": token, "patient_name": "Customer", "patient_date_of_birth": "1980-01-01",
        "product_id": str(strength.product_id), "strength_id": str(strength.id),
        "quantity_authorised": "90", "refills": "1", "units_per_day": "1",
        "directions": "One tablet daily", "prescriber_name": "Dr Lee Park",
        "prescriber_address": "1 Clinic Way", "prescriber_phone": "503-555-0199",
        "prescriber_npi": "1234567890", "date_written": dt.date.today().isoformat(),
        "verification_method": "electronic",
    }
    refused = pharmacist.post(f"/pharmacy/prescriptions/{pid}/approve", data=form)
    assert refused.status_code == 422 and "valid check digit" in refused.get_data(as_text=True)
    form["prescriber_npi"] = "1234567893"
    assert pharmacist.post(f"/pharmacy/prescriptions/{pid}/approve", data=form).status_code == 302
    mine = customer.get("/prescriptions").get_data(as_text=True)
    assert "Approved" in mine and "180 units left" in mine
    with app.app_context():
        actions = set(db.session.scalars(sa.select(AuditEvent.action)))
    assert {"prescription.claimed", "prescription.viewed", "patient_profile.viewed",
            "prescription.approved"} <= actions


def test_rejection_shows_the_reason_to_the_customer(
    app: Flask, signed_in: Callable[[str], FlaskClient], upload_prescription: Callable[..., int]
) -> None:
    pid = upload_prescription()
    pharmacist, customer = signed_in("pharmacist"), signed_in("customer")
    token = csrf_token(pharmacist, "/pharmacy/queue")
    pharmacist.post(f"/pharmacy/prescriptions/{pid}/claim", data={"csrf_token": token})
    refused = pharmacist.post(f"/pharmacy/prescriptions/{pid}/reject",
                              data={"csrf_token": token, "reason": "illegible", "note": ""})
    assert refused.status_code == 422 and "Write a note" in refused.get_data(as_text=True)
    pharmacist.post(f"/pharmacy/prescriptions/{pid}/reject", data={
        "csrf_token": token, "reason": "illegible", "note": "The photo is blurred; please retake it."})
    page = customer.get(f"/prescriptions/{pid}").get_data(as_text=True)
    assert "The prescription cannot be read" in page and "please retake it" in page
    with app.app_context():
        assert db.session.scalars(sa.select(OutboxMessage.kind)).all() == ["prescription_rejected"]


def strength_select(page: str) -> str:
    import re

    return re.search(r'<select[^>]*id="strength_id".*?</select>', page, re.DOTALL).group(0)


def test_the_strength_list_offers_only_the_chosen_drugs_strengths(
    app: Flask, signed_in: Callable[[str], FlaskClient], upload_prescription: Callable[..., int]
) -> None:
    import json
    import re

    pid, unnamed = upload_prescription(), upload_prescription(product_slug=None)
    pharmacist = signed_in("pharmacist")
    token = csrf_token(pharmacist, "/pharmacy/queue")
    for claimed in (pid, unnamed):
        pharmacist.post(f"/pharmacy/prescriptions/{claimed}/claim", data={"csrf_token": token})

    def offered(select: str) -> list[str]:
        return re.findall(r"<option[^>]*>([^<]*)</option>", select)

    # The customer asked for naltrexone: only its strengths, under its name.
    select = strength_select(pharmacist.get(f"/pharmacy/prescriptions/{pid}").get_data(as_text=True))
    assert offered(select) == ["Choose…", "50 mg film-coated tablet", "1.5 mg compounded capsule",
                               "3 mg compounded capsule", "4.5 mg compounded capsule"]
    assert '<optgroup label="Naltrexone">' in select
    # The page's script gets every drug's strengths, to follow a change of drug without a reload.
    data = json.loads(re.search(r'data-strengths="([^"]*)"', select).group(1).replace("&#34;", '"')
                      .replace("&quot;", '"'))
    assert {name for _, name, _ in data} >= {"Naltrexone", "Acamprosate", "Disulfiram"}
    # No drug named yet: every strength, grouped under its drug.
    select = strength_select(pharmacist.get(f"/pharmacy/prescriptions/{unnamed}").get_data(as_text=True))
    assert re.findall(r'<optgroup label="([^"]+)"', select) == ["Acamprosate", "Disulfiram", "Naltrexone"]
    assert "333 mg delayed-release tablet" in offered(select)

    with app.app_context():
        ids = {s.slug: (str(s.product_id), str(s.id)) for s in db.session.scalars(sa.select(Strength))}
    form = {
        "csrf_token": token, "patient_name": "Customer", "patient_date_of_birth": "1980-01-01",
        "product_id": ids["50-mg"][0], "strength_id": ids["333-mg"][1],  # naltrexone, acamprosate's strength
        "quantity_authorised": "90", "refills": "0", "units_per_day": "1", "directions": "One daily",
        "prescriber_name": "Dr Lee Park", "prescriber_address": "1 Clinic Way",
        "prescriber_phone": "503-555-0199", "prescriber_npi": "1234567893",
        "date_written": dt.date.today().isoformat(), "verification_method": "electronic",
    }
    refused = pharmacist.post(f"/pharmacy/prescriptions/{pid}/approve", data=form)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert '<p class="error" id="strength_id-error">Choose a strength of the chosen drug.</p>' in page
    # A strength id no drug has (and no database integer can hold) is refused the same way.
    huge = pharmacist.post(f"/pharmacy/prescriptions/{pid}/approve", data={**form, "strength_id": "9" * 20})
    assert huge.status_code == 422 and "Choose a strength of the chosen drug." in huge.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Prescription, pid).status == "in_review"
    # Changing the drug and checking (no script needed) lists the new drug's strengths.
    checked = pharmacist.post(f"/pharmacy/prescriptions/{pid}/approve",
                              data={**form, "product_id": ids["333-mg"][0], "check": "1"})
    assert offered(strength_select(checked.get_data(as_text=True))) == ["Choose…", "333 mg delayed-release tablet"]


def test_the_review_page_runs_as_many_statements_whatever_the_number_of_drugs(
    app: Flask, signed_in: Callable[[str], FlaskClient], upload_prescription: Callable[..., int],
    count_statements: Callable,
) -> None:
    from tests.catalog.test_query_counts import grow_catalog

    pid = upload_prescription()
    pharmacist = signed_in("pharmacist")
    token = csrf_token(pharmacist, "/pharmacy/queue")
    pharmacist.post(f"/pharmacy/prescriptions/{pid}/claim", data={"csrf_token": token})

    def statements() -> int:
        pharmacist.get(f"/pharmacy/prescriptions/{pid}")  # warm up
        with count_statements() as counter:
            assert pharmacist.get(f"/pharmacy/prescriptions/{pid}").status_code == 200
        return counter.count

    before = statements()
    grow_catalog(app, products=6, strengths=2, packages=1)
    assert statements() == before
