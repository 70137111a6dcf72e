"""Placing orders and moving them along the pipeline.

Placing an order is one transaction: lines snapshotted, stock allocated (conditional UPDATEs in
strength-id order), prescription quantity reserved (conditional UPDATEs), the cart emptied. The same
checkout token twice gives the same order. Status changes go only along TRANSITIONS, each with a
conditional UPDATE on the expected status, a history event and an audit row. The staff operations
that also move money at Stripe (capture, cancel, refund) are in shop.orders.staff, which calls the
pipeline functions here once Stripe has acted; the payment state is derived from the ledger.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, url_for
from sqlalchemy.orm import joinedload, selectinload

from shop import audit
from shop.accounts.models import Address, User
from shop.audit import utcnow
from shop.cart import services as cart
from shop.catalog.wording import units_of
from shop.database import begin_write
from shop.extensions import db
from shop.inventory import services as inventory
from shop.inventory.models import StockLot
from shop.money import format_cents
from shop.notifications.services import enqueue
from shop.orders.models import (
    AWAITING_PAYMENT,
    CANCELLED,
    DELIVERED,
    PAID,
    REFUNDED,
    RELEASED,
    SHIPPED,
    STATUS_LABELS,
    Order,
    OrderEvent,
    OrderLine,
    PaymentEntry,
    PrescriptionReservation,
)
from shop.prescriptions.models import APPROVED, Prescription

TRANSITIONS = {
    (AWAITING_PAYMENT, PAID),
    (AWAITING_PAYMENT, CANCELLED),
    (PAID, AWAITING_PAYMENT),  # the card hold was cancelled at Stripe (see hold_lapsed)
    (PAID, RELEASED),
    (PAID, CANCELLED),
    (RELEASED, SHIPPED),
    (SHIPPED, DELIVERED),
    (RELEASED, REFUNDED),
    (SHIPPED, REFUNDED),
    (DELIVERED, REFUNDED),
}


class CheckoutError(Exception):
    """The order could not be placed; the message says why. Nothing was changed."""


class IllegalTransition(Exception):
    """The order's status does not allow the change (any more); the message says why."""


class CannotDispense(Exception):
    """Not enough unexpired stock to dispense the order. Nothing was changed."""


class InvalidInput(Exception):
    """Typed input is wrong: `errors` maps each field to its message. Nothing was changed."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(" ".join(errors.values()))
        self.errors = errors


def new_checkout_token() -> str:
    return secrets.token_urlsafe(24)


def _order_number() -> str:
    return "CW-" + secrets.token_hex(4).upper()


def _event(order: Order, actor: User | None, from_status: str | None, to_status: str, note: str = "") -> None:
    db.session.add(OrderEvent(order_id=order.id, actor_id=actor.id if actor else None,
                              from_status=from_status, to_status=to_status, note=note))


def _move(order: Order, to_status: str, actor: User | None, note: str = "",
          audit_details: dict[str, object] | None = None, **values: object) -> None:
    """Change status only from the status we read; a concurrent change makes this fail."""
    if (order.status, to_status) not in TRANSITIONS:
        raise IllegalTransition(refusal(order, to_status))
    from_status = order.status
    done = db.session.execute(
        sa.update(Order).where(Order.id == order.id, Order.status == from_status)
        .values(status=to_status, **values).execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        raise IllegalTransition("the order changed meanwhile; reload and try again")
    _event(order, actor, from_status, to_status, note)
    audit.record(f"order.{to_status}", object_type="order", object_id=order.id, actor=actor,
                 number=order.number, from_status=from_status, **(audit_details or {}))


def _notify(order: Order, kind: str, subject: str, text: str) -> None:
    customer = order.customer
    enqueue(to=customer.email, kind=kind, user_id=customer.id, subject=subject,
            body=f"Hello {customer.legal_name},\n\n{text}\n\nOrder {order.number}, total "
                 f"{format_cents(order.total_cents, order.currency)}.\n\n"
                 f"{current_app.config['PHARMACY_NAME']}")


# Placing ---------------------------------------------------------------------------------------


def place_order(customer: User, address_id: int | None, checkout_token: str) -> Order:
    """:raise CheckoutError: with what is wrong; nothing is changed."""
    begin_write()
    existing = db.session.scalars(sa.select(Order).where(Order.checkout_token == checkout_token)).first()
    if existing is not None:
        if existing.customer_id != customer.id:
            raise CheckoutError("This checkout has expired. Please start again from your cart.")
        return existing  # the same checkout submitted twice
    address = db.session.scalars(sa.select(Address).where(
        Address.id == (address_id or 0), Address.user_id == customer.id)).first()
    if address is None:
        raise CheckoutError("Choose a shipping address (or add one to your profile).")
    view = cart.view(customer)
    if not view.lines:
        raise CheckoutError("Your cart is empty.")
    problems = [f"{line.product.name} {line.strength.label}: {line.coverage.message}"
                for line in view.lines if line.coverage is None or not line.coverage.ok]
    problems += [cart.stock_shortage(line.package, line.packs_available, line.units_available,
                                     "Your cart is unchanged.")
                 for line in view.lines if line.packs_available < line.quantity]
    if problems:
        db.session.rollback()
        raise CheckoutError(" ".join(problems))
    now = utcnow()
    order = Order(
        number=_order_number(), customer_id=customer.id, checkout_token=checkout_token,
        status=AWAITING_PAYMENT, created_at=now,
        pay_by=now + dt.timedelta(minutes=current_app.config["ORDER_PAY_WITHIN_MINUTES"]),
        currency=view.currency, subtotal_cents=view.subtotal_cents,
        shipping_cents=view.shipping_cents, total_cents=view.total_cents,
        ship_to="\n".join(address.lines()),
    )
    db.session.add(order)
    try:
        db.session.flush()
        lines = []
        for item in view.lines:
            line = OrderLine(
                order_id=order.id, package_id=item.package.id, strength_id=item.strength.id,
                product_id=item.product.id, product_name=item.product.name,
                strength_label=item.strength.label, dosage_form=item.strength.dosage_form,
                units_per_pack=item.package.units, quantity=item.quantity,
                unit_price_cents=item.package.price_cents, line_total_cents=item.total_cents,
                prescription_only=item.product.prescription_only,
            )
            db.session.add(line)
            lines.append((line, item))
        db.session.flush()
        units: dict[int, int] = {}
        for line, _item in lines:
            units[line.strength_id] = units.get(line.strength_id, 0) + line.units
        inventory.allocate(units, order.id)
        _reserve_prescriptions(lines)
        _event(order, customer, None, AWAITING_PAYMENT)
        audit.record("order.placed", object_type="order", object_id=order.id, actor=customer,
                     number=order.number, total_cents=order.total_cents)
        cart.clear(customer)
        db.session.commit()
    except inventory.OutOfStock as error:
        db.session.rollback()
        raise CheckoutError(_sold_meanwhile(customer, error.strength_id)) from None
    except sa.exc.IntegrityError:
        db.session.rollback()  # the same token placed by a simultaneous submit: return that order
        existing = db.session.scalars(sa.select(Order).where(Order.checkout_token == checkout_token)).first()
        if existing is None:
            raise
        return existing
    return order


def _sold_meanwhile(customer: User, strength_id: int) -> str:
    """What a buyer who lost the race for the last packs reads: what is left now, in the cart's words."""
    fresh = [line for line in cart.view(customer).lines if line.strength.id == strength_id]
    short = [cart.stock_shortage(line.package, line.packs_available, line.units_available,
                                 "Your cart is unchanged.")
             for line in fresh if line.packs_available < line.quantity]
    if not short and fresh:  # each line alone fits, but not all of them together
        line = fresh[0]
        left = f"{units_of(line.units_available, line.strength.dosage_form)} of {line.product.name} " \
               f"{line.strength.label} {'is' if line.units_available == 1 else 'are'} left"
        short = [f"Only {left}: not enough for all the packs of it in your cart. Your cart is unchanged."]
    return " ".join(["Sorry, stock ran out while you were checking out.", *short])


def _reserve_prescriptions(lines: list[tuple[OrderLine, cart.LineView]]) -> None:
    today = dt.date.today()
    # Several lines of one strength share the strength's coverage: hand it out line by line.
    pools: dict[int, list[list]] = {}
    for line, item in lines:
        if not line.prescription_only:
            continue
        pool = pools.setdefault(line.strength_id, [[p.id, n] for p, n in item.coverage.uses])
        needed = line.units
        for entry in pool:
            if needed == 0:
                break
            take = min(needed, entry[1])
            if take == 0:
                continue
            total = Prescription.quantity_authorised * (1 + Prescription.refills)
            done = db.session.execute(
                sa.update(Prescription)
                .where(Prescription.id == entry[0], Prescription.status == APPROVED,
                       Prescription.expires_on >= today,
                       total - Prescription.quantity_dispensed - Prescription.quantity_reserved >= take)
                .values(quantity_reserved=Prescription.quantity_reserved + take)
                .execution_options(synchronize_session=False)
            ).rowcount
            if done != 1:
                raise CheckoutError("A prescription no longer covers your cart (it may have been used by "
                                    "another order). Please check your cart again.")
            db.session.add(PrescriptionReservation(order_line_id=line.id, prescription_id=entry[0],
                                                   units=take))
            entry[1] -= take
            needed -= take
        if needed:
            raise CheckoutError("A prescription no longer covers your cart. Please check it again.")


# Reading -----------------------------------------------------------------------------------------


def customer_orders(customer: User) -> list[Order]:
    return list(db.session.scalars(sa.select(Order).where(Order.customer_id == customer.id)
                                   .order_by(Order.created_at.desc(), Order.id.desc())))


def owned_order(customer: User, number: str) -> Order | None:
    return db.session.scalars(sa.select(Order).where(Order.number == number,
                                                     Order.customer_id == customer.id)).first()


def order_by_number(number: str) -> Order | None:
    return db.session.scalars(sa.select(Order).where(Order.number == number)).first()


def orders_in(statuses: Iterable[str], *, newest_first: bool = False,
              limit: int | None = None) -> list[Order]:
    """Orders in these statuses with their customers; oldest first, the order staff work them in."""
    order_by = (Order.created_at.desc(), Order.id.desc()) if newest_first else (Order.created_at, Order.id)
    stmt = (sa.select(Order).where(Order.status.in_(tuple(statuses)))
            .options(selectinload(Order.customer)).order_by(*order_by))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(db.session.scalars(stmt))


ACTION_WORDS = {AWAITING_PAYMENT: "asked to pay again", PAID: "marked paid", RELEASED: "released",
                SHIPPED: "shipped", DELIVERED: "marked delivered", CANCELLED: "cancelled",
                REFUNDED: "refunded"}


def refusal(order: Order, to_status: str) -> str:
    """Why the order cannot go to `to_status`, in a sentence for staff."""
    return (f"Order {order.number} is {STATUS_LABELS[order.status].lower()}, so it cannot be "
            f"{ACTION_WORDS.get(to_status, to_status)}.")


# Payment ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentSummary:
    """An order's payment, derived from its ledger."""

    authorised: int = 0
    captured: int = 0
    refunded: int = 0
    cancelled: int = 0
    refund_count: int = 0
    authorised_at: dt.datetime | None = None  # the latest authorisation: when the card hold began

    @property
    def refundable(self) -> int:
        return max(self.captured - self.refunded, 0)

    @property
    def held(self) -> int:
        """Authorised and not cancelled: after a hold lapsed and the order was paid again, only the
        new hold counts."""
        return max(self.authorised - self.cancelled, 0)

    @property
    def state(self) -> str:
        if self.captured:
            if self.refunded >= self.captured:
                return "refunded"
            return "partly refunded" if self.refunded else "captured"
        if self.held:
            return "authorised"
        return "authorisation cancelled" if self.cancelled else "not paid"


def payment_summaries(order_ids: Iterable[int]) -> dict[int, PaymentSummary]:
    """The payment of each order, from one grouped query over the ledger."""
    ids = tuple(order_ids)
    totals: dict[int, dict[str, int]] = {order_id: {} for order_id in ids}
    authorised_at: dict[int, dt.datetime] = {}
    if ids:
        rows = db.session.execute(
            sa.select(PaymentEntry.order_id, PaymentEntry.kind, sa.func.sum(PaymentEntry.amount_cents),
                      sa.func.count(), sa.func.max(PaymentEntry.created_at))
            .where(PaymentEntry.order_id.in_(ids))
            .group_by(PaymentEntry.order_id, PaymentEntry.kind))
        for order_id, kind, amount, count, latest in rows:
            totals[order_id][kind] = int(amount)
            if kind == "refunded":
                totals[order_id]["refund_count"] = int(count)
            if kind == "authorised":
                authorised_at[order_id] = latest
    return {order_id: PaymentSummary(
        authorised=sums.get("authorised", 0), captured=sums.get("captured", 0),
        refunded=sums.get("refunded", 0), cancelled=sums.get("cancelled", 0),
        refund_count=sums.get("refund_count", 0), authorised_at=authorised_at.get(order_id))
        for order_id, sums in totals.items()}


def payment_summary(order: Order) -> PaymentSummary:
    return payment_summaries([order.id])[order.id]


def payment_state(order: Order) -> str:
    """"not paid", "authorised", "authorisation cancelled", "captured", "partly refunded" or "refunded"."""
    return payment_summary(order).state


def ledger_total(order: Order, kind: str) -> int:
    return _ledger_sum(order.id, kind)


def _ledger_sum(order_id: int, kind: str) -> int:
    return db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(PaymentEntry.amount_cents), 0))
                             .where(PaymentEntry.order_id == order_id, PaymentEntry.kind == kind))


def _ledger(order: Order, kind: str, amount: int, reference: str) -> bool:
    """Add a ledger entry once per (kind, reference); False when it was already there."""
    exists = db.session.scalars(sa.select(PaymentEntry.id).where(
        PaymentEntry.kind == kind, PaymentEntry.reference == reference)).first()
    if exists:
        return False
    db.session.add(PaymentEntry(order_id=order.id, kind=kind, amount_cents=amount, reference=reference))
    return True


def attach_intent(order: Order, intent_id: str) -> None:
    begin_write()
    db.session.execute(sa.update(Order).where(Order.id == order.id, Order.payment_intent_id.is_(None))
                       .values(payment_intent_id=intent_id).execution_options(synchronize_session=False))
    db.session.commit()


def detach_intent(order: Order, intent_id: str) -> bool:
    """Take the intent off an unpaid order, so that a payment completed with it can no longer mark
    the order paid (the caller then cancels it at Stripe). False when the order is no longer unpaid
    with that intent (paid meanwhile)."""
    begin_write()
    done = db.session.execute(
        sa.update(Order).where(Order.id == order.id, Order.payment_intent_id == intent_id,
                               Order.status == AWAITING_PAYMENT)
        .values(payment_intent_id=None).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    db.session.expire(order)
    return done == 1


def hold_may_be_released(order: Order, intent_id: str) -> bool:
    """Whether a card hold on this intent may be cancelled at Stripe: only when it is not the intent
    the order was accepted with. An unpaid order's own intent is taken off it first (so a payment
    completing with it can no longer mark the order paid); the intent of a paid, released, shipped,
    delivered or refunded order is never let go, whatever an event or a page says about it."""
    if detach_intent(order, intent_id):
        return True
    return order.payment_intent_id != intent_id or order.status == CANCELLED


def record_authorisation(order_id: int, intent_id: str, amount: int, currency: str) -> bool:
    """The card is authorised for the order's total: mark it paid. Safe to call again, from the
    browser's return and from a webhook in any order. Returns True when the order is (now) paid."""
    begin_write()
    order = db.session.get(Order, order_id)
    if order is None or order.payment_intent_id != intent_id:
        db.session.rollback()
        return False
    if amount != order.total_cents or currency.upper() != order.currency.upper():
        audit.record("payment.amount_mismatch", object_type="order", object_id=order.id,
                     expected=order.total_cents, got=amount)
        db.session.commit()
        return False
    if order.status != AWAITING_PAYMENT:
        db.session.rollback()
        return order.status != CANCELLED
    _ledger(order, "authorised", amount, intent_id)
    _move(order, PAID, None, note="Card authorised")
    _notify(order, "order_paid", f"Order {order.number} confirmed",
            "Thank you. Your card is authorised, and it is charged only when our pharmacist releases "
            "the order for dispensing.")
    db.session.commit()
    return True


def hold_lapsed(order: Order, intent_id: str) -> bool:
    """The card hold of a paid order was cancelled at Stripe (holds lapse after about 7 days, or
    someone cancelled it there): the order needs paying again. It goes back to awaiting payment
    without an intent (the payment page starts a fresh one), keeps its stock and prescription units
    for ORDER_PAY_WITHIN_MINUTES from now as a new order does (then the unpaid-order expiry
    applies), the ledger records the cancelled authorisation, and the customer is emailed a link to
    pay again. False when the order is not paid with that intent (nothing changes).

    :raise IllegalTransition: the order moved on at the same moment.
    """
    with _transaction():
        order = _locked(order.id)
        if order.status != PAID or order.payment_intent_id != intent_id:
            return False
        held = db.session.scalar(sa.select(PaymentEntry.amount_cents).where(
            PaymentEntry.kind == "authorised", PaymentEntry.reference == intent_id)) or 0
        _ledger(order, "cancelled", held, intent_id)
        pay_by = utcnow() + dt.timedelta(minutes=current_app.config["ORDER_PAY_WITHIN_MINUTES"])
        _move(order, AWAITING_PAYMENT, None, note="The card authorisation was cancelled at Stripe; "
              "the customer is asked to pay again", audit_details={"intent": intent_id},
              payment_intent_id=None, pay_by=pay_by)
        link = current_app.config["PUBLIC_URL"].rstrip("/") + url_for("orders.pay", number=order.number)
        _notify(order, "order_payment_needed", f"Order {order.number}: please pay again",
                "The hold on your card for this order has ended (banks release a hold after about a "
                "week), so nothing has been charged for it. We are keeping your medicines and your "
                f"prescription for you until {pay_by.strftime('%d %b %Y %H:%M')} UTC. Please pay "
                f"again here:\n{link}")
    return True


def record_capture(order_id: int, intent_id: str, amount: int) -> None:
    begin_write()
    order = db.session.get(Order, order_id)
    if order is None:
        db.session.rollback()
        return
    _ledger(order, "captured", amount, intent_id)
    db.session.commit()


# Pipeline --------------------------------------------------------------------------------------
# Each function below is one transaction: begin_write() first, the order read again and locked
# (FOR UPDATE on PostgreSQL; SQLite already holds the write lock), the transition checked before
# anything is touched, then stock, prescriptions, ledger, history, audit and outbox together.
# Any refusal or error rolls the whole of it back.


@contextmanager
def _transaction() -> Iterator[None]:
    begin_write()
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def _locked(order_id: int) -> Order:
    order = db.session.get(Order, order_id, with_for_update=True, populate_existing=True)
    if order is None:
        raise IllegalTransition("That order no longer exists.")
    return order


def _check(order: Order, to_status: str) -> None:
    if (order.status, to_status) not in TRANSITIONS:
        raise IllegalTransition(refusal(order, to_status))


def _units_by_strength(order: Order) -> dict[int, int]:
    units: dict[int, int] = {}
    for line in order.lines:
        units[line.strength_id] = units.get(line.strength_id, 0) + line.units
    return units


def _open_reservations(order: Order) -> list[PrescriptionReservation]:
    """The order's reservations still holding prescription quantity, in prescription-id order (the
    order every writer updates prescriptions in, so two orders cannot deadlock)."""
    return sorted((r for line in order.lines for r in line.reservations if r.state == "reserved"),
                  key=lambda r: (r.prescription_id, r.id))


def _release_holds(order: Order, reason: str) -> None:
    for reservation in _open_reservations(order):
        db.session.execute(
            sa.update(Prescription).where(Prescription.id == reservation.prescription_id)
            .values(quantity_reserved=Prescription.quantity_reserved - reservation.units)
            .execution_options(synchronize_session=False))
        reservation.state = "released"
    inventory.release(_units_by_strength(order), order.id, reason)


def dispense_shortfalls(order: Order) -> list[str]:
    """What stops the order being dispensed today: a strength without enough units in unexpired lots
    (a lot may have expired since the order was placed). Read only; empty when all is there."""
    needed = _units_by_strength(order)
    available = dict(db.session.execute(
        sa.select(StockLot.strength_id, sa.func.sum(StockLot.units_remaining))
        .where(StockLot.strength_id.in_(tuple(needed)), StockLot.units_remaining > 0,
               StockLot.expiry_date >= dt.date.today())
        .group_by(StockLot.strength_id)).all())
    names = {line.strength_id: f"{line.product_name} {line.strength_label}" for line in order.lines}
    return [f"{names[sid]}: {units} units needed, {available.get(sid, 0)} in unexpired lots"
            for sid, units in sorted(needed.items()) if available.get(sid, 0) < units]


def release_for_dispensing(order: Order, pharmacist: User, captured_amount: int) -> None:
    """After the payment is captured: stock leaves the shelf (earliest expiry first) and the
    prescription quantity moves from reserved to dispensed.

    :raise IllegalTransition: the order is not paid (released already, cancelled, ...).
    :raise CannotDispense: not enough unexpired stock. Nothing is changed either way.
    """
    with _transaction():
        order = _locked(order.id)
        _check(order, RELEASED)
        # Strength rows before their lots, in id order, as every stock writer takes them.
        inventory.lock_strengths(_units_by_strength(order))
        # The webhook may have recorded the capture already: one entry per intent.
        _ledger(order, "captured", captured_amount, order.payment_intent_id or f"order-{order.id}")
        names = {line.strength_id: f"{line.product_name} {line.strength_label}" for line in order.lines}
        lots: list[str] = []
        # Strengths in id order, as every stock writer locks them (no deadlock between orders).
        for strength_id, units in sorted(_units_by_strength(order).items()):
            try:
                taken = inventory.dispense(strength_id, units, order.id, pharmacist.id)
            except inventory.OutOfStock:
                raise CannotDispense(f"{names[strength_id]} has not enough units in unexpired lots") from None
            lots += [f"{lot.lot_number} ({n})" for lot, n in taken]
        for reservation in _open_reservations(order):
            db.session.execute(
                sa.update(Prescription).where(Prescription.id == reservation.prescription_id)
                .values(quantity_reserved=Prescription.quantity_reserved - reservation.units,
                        quantity_dispensed=Prescription.quantity_dispensed + reservation.units)
                .execution_options(synchronize_session=False))
            reservation.state = "dispensed"
        _move(order, RELEASED, pharmacist,
              note=f"Captured {format_cents(captured_amount, order.currency)}; lots {', '.join(lots)}",
              audit_details={"captured_cents": captured_amount, "lots": lots})
        _notify(order, "order_released", f"Order {order.number} is being prepared",
                f"Our pharmacist has checked and released your order; your card has now been charged "
                f"{format_cents(captured_amount, order.currency)}.")


def cancel(order: Order, actor: User | None, reason: str, *, only_from: str | None = None) -> None:
    """Cancel an unpaid or authorised order: stock and prescription quantity come back. The card
    authorisation must already be cancelled with Stripe by the caller (shop.orders.staff.cancel).

    :raise IllegalTransition: the order is past the point of cancelling (refund it instead), or not
        in status `only_from` (e.g. the expiry job cancels only orders that are still unpaid).
    """
    with _transaction():
        order = _locked(order.id)
        if only_from is not None and order.status != only_from:
            raise IllegalTransition(refusal(order, CANCELLED))
        _check(order, CANCELLED)
        # What the card still holds: a hold that lapsed earlier is in the ledger as cancelled already.
        authorised = max(_ledger_sum(order.id, "authorised") - _ledger_sum(order.id, "cancelled"), 0)
        if authorised and order.payment_intent_id:
            _ledger(order, "cancelled", authorised, order.payment_intent_id)
        _release_holds(order, reason)
        _move(order, CANCELLED, actor, note=reason, audit_details={"reason": reason})
        hold = " The hold on your card is released." if authorised else ""
        _notify(order, "order_cancelled", f"Order {order.number} is cancelled",
                f"Your order was cancelled ({reason}). Nothing has been charged.{hold}")


def ship(order: Order, actor: User, carrier: str, tracking_number: str) -> None:
    """:raise InvalidInput: carrier or tracking number missing or too long.
    :raise IllegalTransition: the order is not released for dispensing (or not any more)."""
    carrier, tracking_number = carrier.strip(), tracking_number.strip()
    errors = {}
    if not carrier or len(carrier) > 60:
        errors["carrier"] = "Enter the carrier (at most 60 characters)."
    if not tracking_number or len(tracking_number) > 80:
        errors["tracking_number"] = "Enter the tracking number (at most 80 characters)."
    if errors:
        raise InvalidInput(errors)
    with _transaction():
        order = _locked(order.id)
        _move(order, SHIPPED, actor, note=f"{carrier} {tracking_number}",
              audit_details={"carrier": carrier, "tracking_number": tracking_number},
              carrier=carrier, tracking_number=tracking_number)
        _notify(order, "order_shipped", f"Order {order.number} has shipped",
                f"Your order is on its way with {carrier}, tracking number {tracking_number}.")


def mark_delivered(order: Order, actor: User) -> None:
    """:raise IllegalTransition: the order has not shipped (or is delivered already)."""
    with _transaction():
        order = _locked(order.id)
        _move(order, DELIVERED, actor)


def record_refund(order: Order, actor: User, amount: int, refund_id: str, reason: str = "") -> bool:
    """Record a refund Stripe has made (shop.orders.staff.refund makes it). Recording the same
    refund again changes nothing (False). Once everything captured is refunded, the order is
    refunded."""
    with _transaction():
        order = _locked(order.id)
        if not _ledger(order, "refunded", amount, refund_id):
            return False
        db.session.flush()
        refunded, captured = (_ledger_sum(order.id, kind) for kind in ("refunded", "captured"))
        audit.record("order.refund", object_type="order", object_id=order.id, actor=actor,
                     number=order.number, amount_cents=amount, refund_id=refund_id, reason=reason)
        if refunded >= captured and (order.status, REFUNDED) in TRANSITIONS:
            note = f"{format_cents(refunded, order.currency)} to the card" + (f": {reason}" if reason else "")
            _move(order, REFUNDED, actor, note=note)
        _notify(order, "order_refunded", f"Refund for order {order.number}",
                f"We have refunded {format_cents(amount, order.currency)} to your card"
                + (f" ({reason})." if reason else ".") + " It may take a few days to show on your statement.")
    return True


def expired_unpaid(now: dt.datetime | None = None) -> list[Order]:
    """Orders whose time to pay has run out. They are cancelled by shop.orders.staff.expire_unpaid,
    which first asks Stripe about any payment begun for them."""
    return list(db.session.scalars(sa.select(Order).where(
        Order.status == AWAITING_PAYMENT, Order.pay_by < (now or utcnow())).order_by(Order.id)))


# Staff pages -----------------------------------------------------------------------------------

# The stages staff work through, in order: what each needs next.
STAFF_STAGES = ((PAID, "Waiting for release by a pharmacist"), (RELEASED, "Released: to ship"),
                (SHIPPED, "Shipped: to mark delivered"))
OTHER_STATUSES = (AWAITING_PAYMENT, DELIVERED, CANCELLED, REFUNDED)
# A card hold lapses after about 7 days: from this age staff are told to release the order soon.
OLD_HOLD_DAYS = 5


@dataclass(frozen=True)
class Stage:
    status: str
    title: str
    orders: list[Order]
    more: bool  # more orders wait than are listed


@dataclass(frozen=True)
class StaffBoard:
    stages: list[Stage]
    recent: list[Order]  # the latest orders in the other statuses, newest first
    payments: dict[int, PaymentSummary]
    old_holds: dict[int, int]  # paid orders whose card hold is OLD_HOLD_DAYS or more old: its age in days


def staff_board(per_stage: int = 200, recent: int = 30) -> StaffBoard:
    stages = []
    for status, title in STAFF_STAGES:
        found = orders_in([status], limit=per_stage + 1)
        stages.append(Stage(status, title, found[:per_stage], len(found) > per_stage))
    others = orders_in(OTHER_STATUSES, newest_first=True, limit=recent)
    ids = [o.id for stage in stages for o in stage.orders] + [o.id for o in others]
    payments = payment_summaries(ids)
    now = utcnow()
    ages = {o.id: (now - payments[o.id].authorised_at).days for stage in stages for o in stage.orders
            if o.status == PAID and payments[o.id].authorised_at is not None}
    return StaffBoard(stages, others, payments,
                      {order_id: days for order_id, days in ages.items() if days >= OLD_HOLD_DAYS})


@dataclass(frozen=True)
class StaffOrderView:
    order: Order
    payment: PaymentSummary
    prescriptions: dict[int, Prescription]  # by id: those the order's reservations use
    refunds: list[audit.AuditEvent]  # who refunded what, from the audit log


def staff_order(number: str) -> StaffOrderView | None:
    order = db.session.scalars(sa.select(Order).where(Order.number == number).options(
        joinedload(Order.customer),
        selectinload(Order.lines).selectinload(OrderLine.reservations),
        selectinload(Order.events).joinedload(OrderEvent.actor),
        selectinload(Order.payments),
    )).first()
    if order is None:
        return None
    ids = {r.prescription_id for line in order.lines for r in line.reservations}
    prescriptions = {p.id: p for p in db.session.scalars(
        sa.select(Prescription).where(Prescription.id.in_(ids)))} if ids else {}
    refunds = list(db.session.scalars(sa.select(audit.AuditEvent).where(
        audit.AuditEvent.action == "order.refund", audit.AuditEvent.object_type == "order",
        audit.AuditEvent.object_id == str(order.id)).order_by(audit.AuditEvent.id)))
    return StaffOrderView(order, payment_summary(order), prescriptions, refunds)


def staff_actions(order: Order, payment: PaymentSummary, role: str) -> frozenset[str]:
    """The actions the order's status allows to this role now (the routes enforce the roles too)."""
    actions = set()
    if order.status == PAID and role == "pharmacist":
        actions.add("release")
    if (order.status, CANCELLED) in TRANSITIONS:
        actions.add("cancel")
    if order.status == RELEASED:
        actions.add("ship")
    if order.status == SHIPPED:
        actions.add("deliver")
    if role == "admin" and (order.status, REFUNDED) in TRANSITIONS and payment.refundable > 0:
        actions.add("refund")
    return frozenset(actions)
