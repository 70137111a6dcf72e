"""Prescriptions, their document pages and their status history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.accounts.models import User
from shop.audit import utcnow
from shop.catalog.models import Product, Strength
from shop.extensions import db

UPLOADED, IN_REVIEW, APPROVED, REJECTED = "uploaded", "in_review", "approved", "rejected"
STATUSES = (UPLOADED, IN_REVIEW, APPROVED, REJECTED)
STATUS_LABELS = {
    UPLOADED: "Waiting for review",
    IN_REVIEW: "Being reviewed",
    APPROVED: "Approved",
    REJECTED: "Rejected",
}
REJECTION_REASONS = {
    "illegible": "The prescription cannot be read",
    "incomplete": "Information is missing from the prescription",
    "expired": "The prescription has expired",
    "prescriber_unverified": "We could not verify the prescriber",
    "patient_mismatch": "The prescription is for a different patient",
    "clinical_concern": "Our pharmacist has a clinical concern",
    "controlled_substance": "We do not fill controlled substances online",
    "other": "Other reason",
}
VERIFICATION_METHODS = {
    "phone": "Phone call with the prescriber's office",
    "electronic": "Electronic prescription received from the prescriber",
    "original": "Original paper prescription received",
}


class Prescription(db.Model):
    __tablename__ = "prescription"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('uploaded', 'in_review', 'approved', 'rejected')", name="status"
        ),
        sa.CheckConstraint("quantity_dispensed >= 0", name="dispensed_not_negative"),
        sa.CheckConstraint("quantity_reserved >= 0", name="reserved_not_negative"),
        # The queue reads waiting prescriptions oldest first: a partial index holds only those,
        # so it stays small however many decided prescriptions pile up.
        sa.Index(
            "ix_prescription_waiting", "created_at", "id",
            sqlite_where=sa.text("status IN ('uploaded', 'in_review')"),
            postgresql_where=sa.text("status IN ('uploaded', 'in_review')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(sa.String(20), default=UPLOADED)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # What the customer says it is for, and their note.
    requested_product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("product.id", ondelete="SET NULL")
    )
    customer_note: Mapped[str] = mapped_column(sa.Text, default="")

    # The claim: exclusive to one pharmacist until it lapses.
    claimed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    claimed_at: Mapped[dt.datetime | None]
    claim_expires_at: Mapped[dt.datetime | None]

    # The decision.
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    decided_at: Mapped[dt.datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(sa.String(40))
    rejection_note: Mapped[str] = mapped_column(sa.Text, default="")

    # What the pharmacist transcribed and verified (set on approval).
    patient_name: Mapped[str | None] = mapped_column(sa.String(160))
    patient_date_of_birth: Mapped[dt.date | None]
    product_id: Mapped[int | None] = mapped_column(sa.ForeignKey("product.id"), index=True)
    strength_id: Mapped[int | None] = mapped_column(sa.ForeignKey("strength.id"), index=True)
    dosage_form: Mapped[str | None] = mapped_column(sa.String(80))
    quantity_authorised: Mapped[int | None]
    refills: Mapped[int | None]
    units_per_day: Mapped[Decimal | None] = mapped_column(sa.Numeric(8, 3))
    directions: Mapped[str | None] = mapped_column(sa.Text)
    dispense_as_written: Mapped[bool] = mapped_column(default=False)
    prescriber_name: Mapped[str | None] = mapped_column(sa.String(160))
    prescriber_address: Mapped[str | None] = mapped_column(sa.String(300))
    prescriber_phone: Mapped[str | None] = mapped_column(sa.String(40))
    prescriber_npi: Mapped[str | None] = mapped_column(sa.String(10))
    date_written: Mapped[dt.date | None]
    expires_on: Mapped[dt.date | None]
    verification_method: Mapped[str | None] = mapped_column(sa.String(20))
    verification_contact: Mapped[str | None] = mapped_column(sa.String(160))
    override_reason: Mapped[str | None] = mapped_column(sa.Text)
    # Units handed out against it, and units promised to orders not yet dispensed.
    quantity_dispensed: Mapped[int] = mapped_column(default=0)
    quantity_reserved: Mapped[int] = mapped_column(default=0)

    customer: Mapped[User] = relationship(foreign_keys=[customer_id])
    claimed_by: Mapped[User | None] = relationship(foreign_keys=[claimed_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    requested_product: Mapped[Product | None] = relationship(foreign_keys=[requested_product_id])
    product: Mapped[Product | None] = relationship(foreign_keys=[product_id])
    strength: Mapped[Strength | None] = relationship()
    files: Mapped[list[PrescriptionFile]] = relationship(
        back_populates="prescription", order_by="PrescriptionFile.position",
        cascade="all, delete-orphan",
    )
    events: Mapped[list[PrescriptionEvent]] = relationship(
        back_populates="prescription", order_by="PrescriptionEvent.id",
        cascade="all, delete-orphan",
    )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def quantity_total(self) -> int:
        """Units authorised over the prescription's life: the first fill plus every refill."""
        return (self.quantity_authorised or 0) * (1 + (self.refills or 0))

    @property
    def quantity_remaining(self) -> int:
        return self.quantity_total - self.quantity_dispensed - self.quantity_reserved

    def is_expired(self, today: dt.date | None = None) -> bool:
        return self.expires_on is not None and self.expires_on < (today or dt.date.today())

    @property
    def rejection_label(self) -> str:
        return REJECTION_REASONS.get(self.rejection_reason or "", "")


class PrescriptionFile(db.Model):
    """One page or document of a prescription, stored encrypted under a random key."""

    __tablename__ = "prescription_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prescription.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(default=0)
    storage_key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int]
    content_type: Mapped[str] = mapped_column(sa.String(40))
    pages: Mapped[int] = mapped_column(default=1)
    # Shown to people only; never used to decide anything or to name the stored object.
    original_name: Mapped[str] = mapped_column(sa.String(120), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    prescription: Mapped[Prescription] = relationship(back_populates="files")

    @property
    def extension(self) -> str:
        return {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}[self.content_type]


class PrescriptionEvent(db.Model):
    """One step of the prescription's history: who moved it from which status to which, when."""

    __tablename__ = "prescription_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prescription.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    action: Mapped[str] = mapped_column(sa.String(40))
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.Text, default="")

    prescription: Mapped[Prescription] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()
