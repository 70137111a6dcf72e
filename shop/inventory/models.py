"""Stock received in lots, and the ledger of every stock movement."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.accounts.models import User
from shop.audit import utcnow
from shop.catalog.models import Strength
from shop.extensions import db

MOVEMENT_KINDS = ("receipt", "allocation", "release", "dispense", "adjustment", "expiry")
ADJUSTMENT_REASONS = {
    "count_correction": "Count correction",
    "damaged": "Damaged",
    "expired": "Expired",
    "returned": "Returned",
}


class StockLot(db.Model):
    """Units of one strength received together, with the maker's lot number and expiry date."""

    __tablename__ = "stock_lot"
    __table_args__ = (
        sa.CheckConstraint("units_remaining >= 0", name="remaining_not_negative"),
        sa.CheckConstraint("units_remaining <= units_received", name="remaining_within_received"),
        sa.UniqueConstraint("strength_id", "lot_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    strength_id: Mapped[int] = mapped_column(sa.ForeignKey("strength.id"), index=True)
    lot_number: Mapped[str] = mapped_column(sa.String(60))
    expiry_date: Mapped[dt.date]
    units_received: Mapped[int]
    units_remaining: Mapped[int]
    supplier_reference: Mapped[str] = mapped_column(sa.String(120), default="")
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    strength: Mapped[Strength] = relationship()


class StockMovement(db.Model):
    """One line of the stock ledger. `units` is signed: + into stock, - out of it."""

    __tablename__ = "stock_movement"

    id: Mapped[int] = mapped_column(primary_key=True)
    strength_id: Mapped[int] = mapped_column(sa.ForeignKey("strength.id"), index=True)
    lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stock_lot.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    kind: Mapped[str] = mapped_column(sa.String(20))
    units: Mapped[int]
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("shop_order.id"), index=True)
    # For adjustments: one of ADJUSTMENT_REASONS; `reason` holds the free-text note.
    reason_code: Mapped[str | None] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.String(200), default="")

    lot: Mapped[StockLot | None] = relationship()
    actor: Mapped[User | None] = relationship()
