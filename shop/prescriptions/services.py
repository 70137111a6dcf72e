"""Prescription domain logic: upload, the review queue, claims, approval and rejection.

Each public function owns its transaction. Status changes go only along TRANSITIONS and are made
with a conditional UPDATE on the expected current state, so two pharmacists acting at once can
never both win; every change writes a history event and an audit row in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload, selectinload

from shop import audit
from shop.accounts.models import User
from shop.audit import utcnow
from shop.catalog.models import Product, Strength
from shop.database import begin_write
from shop.extensions import db
from shop.notifications.services import enqueue
from shop.numbers import parse_id
from shop.prescriptions import safety
from shop.prescriptions.models import (
    APPROVED,
    IN_REVIEW,
    REJECTED,
    REJECTION_REASONS,
    UPLOADED,
    VERIFICATION_METHODS,
    Prescription,
    PrescriptionEvent,
    PrescriptionFile,
)
from shop.prescriptions.npi import npi_valid
from shop.prescriptions.storage import EncryptedStore, StoredBlob
from shop.prescriptions.validation import UploadRefused, validate_upload

MAX_FILES = 5
TRANSITIONS = {
    (UPLOADED, IN_REVIEW),  # claim
    (IN_REVIEW, IN_REVIEW),  # claim taken over after it lapsed
    (IN_REVIEW, UPLOADED),  # claim released
    (IN_REVIEW, APPROVED),
    (IN_REVIEW, REJECTED),
}


class IllegalTransition(Exception):
    """A status change that the pipeline does not allow."""


class ReviewError(Exception):
    """The review could not be saved; `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def check_transition(from_status: str, to_status: str) -> None:
    if (from_status, to_status) not in TRANSITIONS:
        raise IllegalTransition(f"a prescription cannot go from {from_status} to {to_status}")


def _event(prescription_id: int, actor: User | None, action: str, from_status: str | None,
           to_status: str, note: str = "") -> None:
    db.session.add(PrescriptionEvent(
        prescription_id=prescription_id, actor_id=actor.id if actor else None, action=action,
        from_status=from_status, to_status=to_status, note=note,
    ))


# Upload ------------------------------------------------------------------------------------------


@dataclass
class Upload:
    data: bytes
    filename: str


def _display_name(filename: str) -> str:
    # Only for showing the customer their own file back; never used to store or decide anything.
    name = "".join(ch for ch in filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1] if ch.isprintable())
    return name[:120]


def upload(customer: User, uploads: Sequence[Upload], *, requested_product_id: int | None,
           note: str, store: EncryptedStore) -> Prescription:
    """Validate every file, store them encrypted and record the prescription.

    :raise UploadRefused: a file (named in the message) is refused; nothing is stored.
    """
    uploads = [u for u in uploads if u.data or u.filename]
    if not uploads:
        raise UploadRefused("Choose a photo or PDF of your prescription to upload.")
    if len(uploads) > MAX_FILES:
        raise UploadRefused(f"Upload at most {MAX_FILES} files for one prescription.")
    cleaned = []
    for item in uploads:
        try:
            cleaned.append((validate_upload(item.data, item.filename), _display_name(item.filename)))
        except UploadRefused as error:
            name = _display_name(item.filename) or "The file"
            raise UploadRefused(f"{name}: {error.message}") from None
    stored: list[StoredBlob] = []
    try:
        for clean, _name in cleaned:  # encrypted and written before taking the write lock
            stored.append(store.save(clean.data))
        # The request has read (its session, the customer) since its transaction began: without
        # the write lock first, a commit by the worker meanwhile makes the insert fail "database is
        # locked" on SQLite.
        begin_write()
        product = None
        if requested_product_id is not None:
            product = db.session.get(Product, requested_product_id)
            if product is None or not product.active:
                raise UploadRefused("Choose a medicine from the list, or leave it empty.")
        prescription = Prescription(customer_id=customer.id, status=UPLOADED,
                                    requested_product_id=product.id if product else None,
                                    customer_note=note.strip()[:2000])
        prescription.files = [
            PrescriptionFile(position=i, storage_key=blob.key, sha256=blob.sha256, size=blob.size,
                             content_type=clean.content_type, pages=clean.pages, original_name=name)
            for i, ((clean, name), blob) in enumerate(zip(cleaned, stored, strict=True))
        ]
        db.session.add(prescription)
        db.session.flush()
        _event(prescription.id, customer, "uploaded", None, UPLOADED)
        audit.record("prescription.uploaded", object_type="prescription", object_id=prescription.id,
                     actor=customer, files=len(stored))
        db.session.commit()
    except Exception:
        db.session.rollback()
        for blob in stored:  # nothing half-saved: remove blobs the database does not know about
            store.delete(blob.key)
        raise
    return prescription


# Customer views ------------------------------------------------------------------------------------


def customer_prescriptions(customer: User) -> list[Prescription]:
    stmt = (
        sa.select(Prescription)
        .where(Prescription.customer_id == customer.id)
        .order_by(Prescription.created_at.desc(), Prescription.id.desc())
        .options(joinedload(Prescription.product), joinedload(Prescription.strength),
                 joinedload(Prescription.requested_product))
    )
    return list(db.session.scalars(stmt))


def owned_prescription(customer: User, prescription_id: int) -> Prescription | None:
    return db.session.scalars(
        sa.select(Prescription).where(Prescription.id == prescription_id,
                                      Prescription.customer_id == customer.id)
    ).first()


def file_for_viewer(viewer: User, prescription_id: int, file_id: int) -> PrescriptionFile | None:
    """The file when `viewer` is its owner or a pharmacist; None otherwise (shown as 404)."""
    stmt = sa.select(PrescriptionFile).join(Prescription).where(
        PrescriptionFile.id == file_id, PrescriptionFile.prescription_id == prescription_id
    )
    if viewer.role != "pharmacist":
        stmt = stmt.where(Prescription.customer_id == viewer.id)
    return db.session.scalars(stmt).first()


def read_file(viewer: User, file: PrescriptionFile, store: EncryptedStore, *, purpose: str) -> bytes:
    """Decrypt and verify a stored file, recording who looked at it."""
    # Read (maybe from S3) and decrypt before taking the write lock, which only the audit row needs.
    data = store.load(file.storage_key, file.sha256)
    begin_write()
    audit.record(f"prescription.file_{purpose}", object_type="prescription",
                 object_id=file.prescription_id, actor=viewer, file_id=file.id)
    db.session.commit()
    return data


# Queue and claims ----------------------------------------------------------------------------------


@dataclass
class QueuePage:
    items: list[Prescription]
    counts: dict[str, int]
    next_cursor: str | None


def _cursor(prescription: Prescription) -> str:
    return f"{prescription.created_at.isoformat()}_{prescription.id}"


def _parse_cursor(cursor: str | None) -> tuple[dt.datetime, int] | None:
    if not cursor:
        return None
    try:
        stamp, _, ident = cursor.rpartition("_")
        after = dt.datetime.fromisoformat(stamp), parse_id(ident)
    except ValueError:
        return None
    return None if after[1] is None else (after[0], after[1])


def queue(cursor: str | None = None, limit: int = 50) -> QueuePage:
    """Prescriptions waiting for a decision, oldest first, with keyset pagination."""
    stmt = (
        sa.select(Prescription)
        .where(Prescription.status.in_((UPLOADED, IN_REVIEW)))
        .order_by(Prescription.created_at, Prescription.id)
    )
    after = _parse_cursor(cursor)
    if after is not None:
        stmt = stmt.where(sa.tuple_(Prescription.created_at, Prescription.id) > sa.tuple_(*after))
    stmt = stmt.limit(limit + 1).options(
        joinedload(Prescription.customer), joinedload(Prescription.requested_product),
        joinedload(Prescription.claimed_by), selectinload(Prescription.files),
    )
    items = list(db.session.scalars(stmt).unique())
    more = len(items) > limit
    items = items[:limit]
    counts = dict.fromkeys((UPLOADED, IN_REVIEW, APPROVED, REJECTED), 0)
    for status, count in db.session.execute(
        sa.select(Prescription.status, sa.func.count()).group_by(Prescription.status)
    ):
        counts[status] = count
    return QueuePage(items, counts, _cursor(items[-1]) if more and items else None)


def _claim_minutes() -> int:
    return current_app.config["PRESCRIPTION_CLAIM_MINUTES"]


def claim(prescription_id: int, pharmacist: User) -> bool:
    """Claim a prescription for review. Exactly one of several simultaneous claims wins: the
    UPDATE only matches while it is unclaimed, its claim has lapsed, or it is already ours. Nobody
    reviews their own prescription (an account that was a customer before it became staff)."""
    begin_write()
    now = utcnow()
    result = db.session.execute(
        sa.update(Prescription)
        .where(
            Prescription.id == prescription_id,
            Prescription.customer_id != pharmacist.id,
            sa.or_(
                Prescription.status == UPLOADED,
                sa.and_(Prescription.status == IN_REVIEW,
                        sa.or_(Prescription.claim_expires_at < now,
                               Prescription.claimed_by_id == pharmacist.id)),
            ),
        )
        .values(status=IN_REVIEW, claimed_by_id=pharmacist.id, claimed_at=now,
                claim_expires_at=now + dt.timedelta(minutes=_claim_minutes()))
        .returning(Prescription.id)
        .execution_options(synchronize_session=False)
    )
    if result.first() is None:
        db.session.rollback()
        return False
    _event(prescription_id, pharmacist, "claimed", None, IN_REVIEW)
    audit.record("prescription.claimed", object_type="prescription", object_id=prescription_id,
                 actor=pharmacist)
    db.session.commit()
    return True


def release(prescription_id: int, pharmacist: User) -> bool:
    begin_write()
    result = db.session.execute(
        sa.update(Prescription)
        .where(Prescription.id == prescription_id, Prescription.status == IN_REVIEW,
               Prescription.claimed_by_id == pharmacist.id)
        .values(status=UPLOADED, claimed_by_id=None, claimed_at=None, claim_expires_at=None)
        .returning(Prescription.id)
        .execution_options(synchronize_session=False)
    )
    if result.first() is None:
        db.session.rollback()
        return False
    _event(prescription_id, pharmacist, "released", IN_REVIEW, UPLOADED)
    audit.record("prescription.released", object_type="prescription", object_id=prescription_id,
                 actor=pharmacist)
    db.session.commit()
    return True


def holds_claim(prescription: Prescription, pharmacist: User) -> bool:
    return (prescription.status == IN_REVIEW and prescription.claimed_by_id == pharmacist.id
            and prescription.claim_expires_at is not None and prescription.claim_expires_at >= utcnow())


def for_review(prescription_id: int, pharmacist: User) -> Prescription | None:
    """The prescription with its patient's profile, for the review page. The view is audited."""
    begin_write()
    prescription = db.session.scalars(
        sa.select(Prescription).where(Prescription.id == prescription_id).options(
            joinedload(Prescription.customer), selectinload(Prescription.files),
            selectinload(Prescription.events),
        )
    ).first()
    if prescription is None:
        return None
    audit.record("prescription.viewed", object_type="prescription", object_id=prescription.id,
                 actor=pharmacist)
    audit.record("patient_profile.viewed", object_type="user", object_id=prescription.customer_id,
                 actor=pharmacist, prescription_id=prescription.id)
    db.session.commit()
    return prescription


# Review --------------------------------------------------------------------------------------------


@dataclass
class Transcription:
    patient_name: str
    patient_date_of_birth: dt.date | None
    product_id: int | None
    strength_id: int | None
    quantity_authorised: int | None
    refills: int | None
    units_per_day: Decimal | None
    directions: str
    dispense_as_written: bool
    prescriber_name: str
    prescriber_address: str
    prescriber_phone: str
    prescriber_npi: str
    date_written: dt.date | None
    expires_on: dt.date | None
    verification_method: str
    verification_contact: str
    override_reason: str = ""
    warnings: list[safety.SafetyWarning] = field(default_factory=list)


def default_expiry(date_written: dt.date) -> dt.date:
    """The expiry of a prescription that states none; the last day there is when that lies beyond it."""
    try:
        return date_written + dt.timedelta(days=current_app.config["PRESCRIPTION_VALIDITY_DAYS"])
    except OverflowError:
        return dt.date.max


def _validate(t: Transcription) -> tuple[dict[str, str], Product | None, Strength | None]:
    errors: dict[str, str] = {}
    today = dt.date.today()
    for name, label in (("patient_name", "the patient's name"), ("directions", "the directions"),
                        ("prescriber_name", "the prescriber's name"),
                        ("prescriber_address", "the prescriber's address"),
                        ("prescriber_phone", "the prescriber's phone number")):
        if not str(getattr(t, name) or "").strip():
            errors[name] = f"Enter {label}."
    if t.patient_date_of_birth is None or t.patient_date_of_birth > today:
        errors["patient_date_of_birth"] = "Enter the patient's date of birth (not in the future)."
    product = db.session.get(Product, t.product_id) if t.product_id else None
    strength = db.session.get(Strength, t.strength_id) if t.strength_id else None
    if product is None:
        errors["product_id"] = "Choose the drug."
    elif product.controlled_substance:
        errors["product_id"] = "This shop does not fill controlled substances; reject it instead."
    if strength is None or product is None or strength.product_id != product.id:
        errors["strength_id"] = "Choose a strength of the chosen drug."
    if t.quantity_authorised is None or not 1 <= t.quantity_authorised <= 10_000:
        errors["quantity_authorised"] = "Enter the quantity authorised per fill (1 to 10,000 units)."
    if t.refills is None or not 0 <= t.refills <= 12:
        errors["refills"] = "Enter the number of refills (0 to 12)."
    if t.units_per_day is None or not Decimal("0") < t.units_per_day <= 100:
        errors["units_per_day"] = "Enter how many units a day the directions mean (for example 1)."
    if not npi_valid(t.prescriber_npi.strip()):
        errors["prescriber_npi"] = "The NPI must be 10 digits with a valid check digit."
    if t.date_written is None:
        errors["date_written"] = "Enter the date the prescription was written."
    elif t.date_written > today:
        errors["date_written"] = "The date written cannot be in the future."
    if t.expires_on is not None and t.expires_on < today:
        errors["expires_on"] = "The expiry date is in the past: the prescription has expired."
    elif t.expires_on is not None and t.date_written and t.expires_on < t.date_written:
        errors["expires_on"] = "The expiry date is before the date written."
    elif t.expires_on is None and t.date_written and "date_written" not in errors \
            and default_expiry(t.date_written) < today:
        errors["expires_on"] = "This prescription expired on " \
            f"{default_expiry(t.date_written):%d %b %Y}; reject it as expired."
    if t.verification_method not in VERIFICATION_METHODS:
        errors["verification_method"] = "Say how the prescription was verified with the prescriber."
    elif t.verification_method == "phone" and not t.verification_contact.strip():
        errors["verification_contact"] = "Enter the name of the person you spoke to."
    return errors, product, strength


def review_warnings(prescription: Prescription, t: Transcription) -> list[safety.SafetyWarning]:
    product = db.session.get(Product, t.product_id) if t.product_id else None
    if product is None:
        product = prescription.requested_product
    if product is None:
        return []
    patient = prescription.customer
    warnings = safety.profile_warnings(patient, product)
    warnings += safety.duplicate_warnings(patient, product, exclude_id=prescription.id)
    strength = db.session.get(Strength, t.strength_id) if t.strength_id else None
    if strength is not None and strength.product_id == product.id:
        warnings += safety.dose_warnings(product, strength, t.units_per_day)
    warnings += safety.identity_warnings(patient, t.patient_name, t.patient_date_of_birth)
    return safety.sort_warnings(warnings)


def approve(prescription_id: int, pharmacist: User, t: Transcription) -> Prescription:
    """Record the verified transcription and approve.

    :raise ReviewError: a field is wrong, a severe warning has no override reason, or the
        pharmacist does not hold the claim. Nothing changes.
    """
    begin_write()
    prescription = db.session.get(Prescription, prescription_id)
    if prescription is None:
        raise ReviewError({"prescription": "No such prescription."})
    if not holds_claim(prescription, pharmacist) or prescription.customer_id == pharmacist.id:
        raise ReviewError({"prescription": "Claim this prescription before deciding on it "
                                           "(your claim may have lapsed)."})
    errors, product, strength = _validate(t)
    warnings = review_warnings(prescription, t)
    if any(w.severity == "severe" for w in warnings) and not t.override_reason.strip():
        errors["override_reason"] = "There is a severe warning: write why it is safe to approve."
    if errors:
        db.session.rollback()
        raise ReviewError(errors)
    check_transition(prescription.status, APPROVED)
    assert product is not None and strength is not None and t.date_written is not None
    values = {
        "status": APPROVED, "decided_by_id": pharmacist.id, "decided_at": utcnow(),
        "claim_expires_at": None,
        "patient_name": " ".join(t.patient_name.split()),
        "patient_date_of_birth": t.patient_date_of_birth,
        "product_id": product.id, "strength_id": strength.id, "dosage_form": strength.dosage_form,
        "quantity_authorised": t.quantity_authorised, "refills": t.refills,
        "units_per_day": t.units_per_day, "directions": t.directions.strip(),
        "dispense_as_written": t.dispense_as_written,
        "prescriber_name": t.prescriber_name.strip(),
        "prescriber_address": t.prescriber_address.strip(),
        "prescriber_phone": t.prescriber_phone.strip(), "prescriber_npi": t.prescriber_npi.strip(),
        "date_written": t.date_written, "expires_on": t.expires_on or default_expiry(t.date_written),
        "verification_method": t.verification_method,
        "verification_contact": t.verification_contact.strip(),
        "override_reason": t.override_reason.strip() or None,
    }
    done = db.session.execute(
        sa.update(Prescription)
        .where(Prescription.id == prescription_id, Prescription.status == IN_REVIEW,
               Prescription.claimed_by_id == pharmacist.id)
        .values(**values).returning(Prescription.id)
        .execution_options(synchronize_session=False)
    ).first()
    if done is None:
        db.session.rollback()
        raise ReviewError({"prescription": "Someone else decided on this prescription meanwhile."})
    _event(prescription_id, pharmacist, "approved", IN_REVIEW, APPROVED,
           note=f"Override: {t.override_reason.strip()}" if t.override_reason.strip() else "")
    audit.record("prescription.approved", object_type="prescription", object_id=prescription_id,
                 actor=pharmacist, product=product.slug, strength=strength.label,
                 quantity=t.quantity_authorised, refills=t.refills,
                 warnings=[w.title for w in warnings], override=bool(t.override_reason.strip()))
    customer = prescription.customer
    enqueue(
        to=customer.email, kind="prescription_approved", user_id=customer.id,
        subject="Your prescription is approved",
        body=(f"Hello {customer.legal_name},\n\nOur pharmacist has approved your prescription "
              f"#{prescription_id} for {product.name} {strength.label} "
              f"({t.quantity_authorised} units, {t.refills} refills). It is valid until "
              f"{values['expires_on']:%d %B %Y}.\n\n{current_app.config['PHARMACY_NAME']}"),
    )
    db.session.commit()
    db.session.refresh(prescription)
    return prescription


def reject(prescription_id: int, pharmacist: User, reason: str, note: str) -> Prescription:
    """:raise ReviewError: unknown reason, no note, or the pharmacist does not hold the claim."""
    begin_write()
    prescription = db.session.get(Prescription, prescription_id)
    if prescription is None:
        raise ReviewError({"prescription": "No such prescription."})
    errors = {}
    if reason not in REJECTION_REASONS:
        errors["reason"] = "Choose a reason."
    if not note.strip():
        errors["note"] = "Write a note for the customer: what was wrong and what to do next."
    if not holds_claim(prescription, pharmacist):
        errors["prescription"] = "Claim this prescription before deciding on it."
    if errors:
        raise ReviewError(errors)
    check_transition(prescription.status, REJECTED)
    done = db.session.execute(
        sa.update(Prescription)
        .where(Prescription.id == prescription_id, Prescription.status == IN_REVIEW,
               Prescription.claimed_by_id == pharmacist.id)
        .values(status=REJECTED, decided_by_id=pharmacist.id, decided_at=utcnow(),
                claim_expires_at=None, rejection_reason=reason, rejection_note=note.strip())
        .returning(Prescription.id)
        .execution_options(synchronize_session=False)
    ).first()
    if done is None:
        db.session.rollback()
        raise ReviewError({"prescription": "Someone else decided on this prescription meanwhile."})
    _event(prescription_id, pharmacist, "rejected", IN_REVIEW, REJECTED, note=REJECTION_REASONS[reason])
    audit.record("prescription.rejected", object_type="prescription", object_id=prescription_id,
                 actor=pharmacist, reason=reason)
    customer = prescription.customer
    enqueue(
        to=customer.email, kind="prescription_rejected", user_id=customer.id,
        subject="We could not accept your prescription",
        body=(f"Hello {customer.legal_name},\n\nOur pharmacist could not accept prescription "
              f"#{prescription_id}. Reason: {REJECTION_REASONS[reason]}.\n\n{note.strip()}\n\n"
              f"You can upload a new prescription from your account, or call us on "
              f"{current_app.config['PHARMACY_PHONE']}.\n\n{current_app.config['PHARMACY_NAME']}"),
    )
    db.session.commit()
    db.session.refresh(prescription)
    return prescription
