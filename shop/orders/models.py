"""Orders with snapshotted lines, their status history, prescription reservations, the payment
ledger and received Stripe events."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.accounts.models import User
from shop.audit import utcnow
from shop.extensions import db

AWAITING_PAYMENT, PAID, RELEASED, SHIPPED, DELIVERED, CANCELLED, REFUNDED = (
    "awaiting_payment", "paid", "released", "shipped", "delivered", "cancelled", "refunded")
ORDER_STATUSES = (AWAITING_PAYMENT, PAID, RELEASED, SHIPPED, DELIVERED, CANCELLED, REFUNDED)
STATUS_LABELS = {
    AWAITING_PAYMENT: "Awaiting payment",
    PAID: "Paid (card authorised)",
    RELEASED: "Released by our pharmacist",
    SHIPPED: "Shipped",
    DELIVERED: "Delivered",
    CANCELLED: "Cancelled",
    REFUNDED: "Refunded",
}


class Order(db.Model):
    __tablename__ = "shop_order"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('awaiting_payment', 'paid', 'released', 'shipped', 'delivered', "
            "'cancelled', 'refunded')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    # The checkout form's one-time token: submitting the same checkout twice finds this order.
    checkout_token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(20), default=AWAITING_PAYMENT, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # An unpaid order gives back its stock and prescription quantity after this moment.
    pay_by: Mapped[dt.datetime]
    currency: Mapped[str] = mapped_column(sa.String(3), default="USD")
    subtotal_cents: Mapped[int]
    shipping_cents: Mapped[int]
    total_cents: Mapped[int]
    ship_to: Mapped[str] = mapped_column(sa.Text)  # the address as it was when ordered
    payment_intent_id: Mapped[str | None] = mapped_column(sa.String(80), unique=True)
    carrier: Mapped[str | None] = mapped_column(sa.String(60))
    tracking_number: Mapped[str | None] = mapped_column(sa.String(80))

    customer: Mapped[User] = relationship()
    lines: Mapped[list[OrderLine]] = relationship(back_populates="order", order_by="OrderLine.id",
                                                  cascade="all, delete-orphan")
    events: Mapped[list[OrderEvent]] = relationship(order_by="OrderEvent.id", cascade="all, delete-orphan")
    payments: Mapped[list[PaymentEntry]] = relationship(order_by="PaymentEntry.id",
                                                        cascade="all, delete-orphan")

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


class OrderLine(db.Model):
    """What was bought, as it was when ordered: later price or name changes do not touch it."""

    __tablename__ = "order_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("shop_order.id", ondelete="CASCADE"), index=True)
    package_id: Mapped[int] = mapped_column(sa.ForeignKey("package.id"))
    strength_id: Mapped[int] = mapped_column(sa.ForeignKey("strength.id"))
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("product.id"))
    product_name: Mapped[str] = mapped_column(sa.String(120))
    strength_label: Mapped[str] = mapped_column(sa.String(40))
    dosage_form: Mapped[str] = mapped_column(sa.String(80))
    units_per_pack: Mapped[int]
    quantity: Mapped[int]  # packs
    unit_price_cents: Mapped[int]  # per pack
    line_total_cents: Mapped[int]
    prescription_only: Mapped[bool]

    order: Mapped[Order] = relationship(back_populates="lines")
    reservations: Mapped[list[PrescriptionReservation]] = relationship(
        back_populates="line", cascade="all, delete-orphan")

    @property
    def units(self) -> int:
        return self.units_per_pack * self.quantity


class OrderEvent(db.Model):
    __tablename__ = "order_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("shop_order.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.Text, default="")

    actor: Mapped[User | None] = relationship()


class PrescriptionReservation(db.Model):
    """Units of a prescription promised to an order line: reserved, then dispensed or released."""

    __tablename__ = "prescription_reservation"
    __table_args__ = (sa.CheckConstraint("units > 0", name="units_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_line_id: Mapped[int] = mapped_column(sa.ForeignKey("order_line.id", ondelete="CASCADE"), index=True)
    prescription_id: Mapped[int] = mapped_column(sa.ForeignKey("prescription.id"), index=True)
    units: Mapped[int]
    state: Mapped[str] = mapped_column(sa.String(20), default="reserved")

    line: Mapped[OrderLine] = relationship(back_populates="reservations")


class PaymentEntry(db.Model):
    """The payment ledger: authorised, captured, refunded, cancelled or failed amounts."""

    __tablename__ = "payment_entry"
    __table_args__ = (sa.UniqueConstraint("kind", "reference"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("shop_order.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    amount_cents: Mapped[int]
    # The Stripe object behind the entry (intent or refund id): recording it twice is impossible.
    reference: Mapped[str] = mapped_column(sa.String(120))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StripeEvent(db.Model):
    """Every webhook event once, by its id: a repeated delivery changes nothing."""

    __tablename__ = "stripe_event"

    id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(80))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    payload: Mapped[str] = mapped_column(sa.Text)
