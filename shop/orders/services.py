"""Placing orders and moving them along the pipeline.

Placing an order is one transaction: lines snapshotted, stock allocated (conditional UPDATEs in
strength-id order), prescription quantity reserved (conditional UPDATEs), the cart emptied. The same
checkout token twice gives the same order. Status changes go only along TRANSITIONS, each with a
conditional UPDATE on the expected status, a history event and an audit row.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

import sqlalchemy as sa
from flask import current_app

from shop import audit
from shop.accounts.models import Address, User
from shop.audit import utcnow
from shop.cart import services as cart
from shop.database import begin_write
from shop.extensions import db
from shop.inventory import services as inventory
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
    pass


def new_checkout_token() -> str:
    return secrets.token_urlsafe(24)


def _order_number() -> str:
    return "CW-" + secrets.token_hex(4).upper()


def _event(order: Order, actor: User | None, from_status: str | None, to_status: str, note: str = "") -> None:
    db.session.add(OrderEvent(order_id=order.id, actor_id=actor.id if actor else None,
                              from_status=from_status, to_status=to_status, note=note))


def _move(order: Order, to_status: str, actor: User | None, note: str = "", **values: object) -> None:
    """Change status only from the status we read; a concurrent change makes this fail."""
    if (order.status, to_status) not in TRANSITIONS:
        raise IllegalTransition(f"an order cannot go from {order.status} to {to_status}")
    from_status = order.status
    done = db.session.execute(
        sa.update(Order).where(Order.id == order.id, Order.status == from_status)
        .values(status=to_status, **values).execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        raise IllegalTransition("the order changed meanwhile; reload and try again")
    _event(order, actor, from_status, to_status, note)
    audit.record(f"order.{to_status}", object_type="order", object_id=order.id, actor=actor,
                 number=order.number, from_status=from_status)


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
    problems += [f"{line.product.name} {line.strength.label}: only {line.packs_available} pack(s) "
                 "in stock." for line in view.lines if line.packs_available < line.quantity]
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
        name = next(f"{i.product.name} {i.strength.label}" for i in view.lines
                    if i.strength.id == error.strength_id)
        raise CheckoutError(f"Sorry, {name} sold out while you were checking out. Your cart is "
                            "unchanged; please choose a smaller quantity.") from None
    except sa.exc.IntegrityError:
        db.session.rollback()  # the same token placed by a simultaneous submit: return that order
        existing = db.session.scalars(sa.select(Order).where(Order.checkout_token == checkout_token)).first()
        if existing is None:
            raise
        return existing
    return order


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


def orders_in(statuses: Iterable[str]) -> list[Order]:
    return list(db.session.scalars(sa.select(Order).where(Order.status.in_(tuple(statuses)))
                                   .order_by(Order.created_at, Order.id)))


# Payment ---------------------------------------------------------------------------------------


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


def record_capture(order_id: int, intent_id: str, amount: int) -> None:
    begin_write()
    order = db.session.get(Order, order_id)
    if order is None:
        db.session.rollback()
        return
    _ledger(order, "captured", amount, intent_id)
    db.session.commit()


# Pipeline --------------------------------------------------------------------------------------


def _release_holds(order: Order, reason: str) -> None:
    units: dict[int, int] = {}
    for line in order.lines:
        units[line.strength_id] = units.get(line.strength_id, 0) + line.units
        for reservation in line.reservations:
            if reservation.state == "reserved":
                db.session.execute(
                    sa.update(Prescription).where(Prescription.id == reservation.prescription_id)
                    .values(quantity_reserved=Prescription.quantity_reserved - reservation.units)
                    .execution_options(synchronize_session=False))
                reservation.state = "released"
    inventory.release(units, order.id, reason)


def release_for_dispensing(order: Order, pharmacist: User, captured_amount: int) -> None:
    """After the payment is captured: stock leaves the shelf (earliest expiry first) and the
    prescription quantity moves from reserved to dispensed."""
    begin_write()
    order = db.session.get(Order, order.id)
    _ledger(order, "captured", captured_amount, order.payment_intent_id or f"order-{order.id}")
    for line in order.lines:
        inventory.dispense(line.strength_id, line.units, order.id, pharmacist.id)
        for reservation in line.reservations:
            if reservation.state == "reserved":
                db.session.execute(
                    sa.update(Prescription).where(Prescription.id == reservation.prescription_id)
                    .values(quantity_reserved=Prescription.quantity_reserved - reservation.units,
                            quantity_dispensed=Prescription.quantity_dispensed + reservation.units)
                    .execution_options(synchronize_session=False))
                reservation.state = "dispensed"
    _move(order, RELEASED, pharmacist, note="Payment captured; dispensed")
    _notify(order, "order_released", f"Order {order.number} is being prepared",
            "Our pharmacist has checked and released your order; your card has now been charged.")
    db.session.commit()


def cancel(order: Order, actor: User | None, reason: str) -> None:
    """Cancel an unpaid or authorised order: stock and prescription quantity come back. The card
    authorisation must already be cancelled with Stripe by the caller."""
    begin_write()
    order = db.session.get(Order, order.id)
    if ledger_total(order, "authorised") and order.payment_intent_id:
        _ledger(order, "cancelled", ledger_total(order, "authorised"), order.payment_intent_id)
    _release_holds(order, reason)
    _move(order, CANCELLED, actor, note=reason)
    _notify(order, "order_cancelled", f"Order {order.number} is cancelled",
            f"Your order was cancelled ({reason}). Nothing has been charged.")
    db.session.commit()


def ship(order: Order, actor: User, carrier: str, tracking_number: str) -> None:
    if not carrier.strip() or not tracking_number.strip():
        raise CheckoutError("Enter the carrier and the tracking number.")
    begin_write()
    order = db.session.get(Order, order.id)
    _move(order, SHIPPED, actor, note=f"{carrier.strip()} {tracking_number.strip()}",
          carrier=carrier.strip()[:60], tracking_number=tracking_number.strip()[:80])
    _notify(order, "order_shipped", f"Order {order.number} has shipped",
            f"Your order is on its way with {carrier.strip()}, tracking number {tracking_number.strip()}.")
    db.session.commit()


def mark_delivered(order: Order, actor: User) -> None:
    begin_write()
    order = db.session.get(Order, order.id)
    _move(order, DELIVERED, actor)
    db.session.commit()


def record_refund(order: Order, actor: User, amount: int, refund_id: str) -> None:
    begin_write()
    order = db.session.get(Order, order.id)
    _ledger(order, "refunded", amount, refund_id)
    db.session.flush()
    refunded, captured = (_ledger_sum(order.id, kind) for kind in ("refunded", "captured"))
    audit.record("order.refund", object_type="order", object_id=order.id, actor=actor, amount_cents=amount)
    if refunded >= captured and order.status != REFUNDED:
        _move(order, REFUNDED, actor, note=f"Refunded {format_cents(refunded, order.currency)}")
    _notify(order, "order_refunded", f"Refund for order {order.number}",
            f"We have refunded {format_cents(amount, order.currency)} to your card.")
    db.session.commit()


def expired_unpaid(now: dt.datetime | None = None) -> list[Order]:
    return list(db.session.scalars(sa.select(Order).where(
        Order.status == AWAITING_PAYMENT, Order.pay_by < (now or utcnow()))))


def release_expired(now: dt.datetime | None = None) -> int:
    """Cancel orders not paid in time, giving back their stock and prescription quantity.
    Run by `flask shop release-expired` and by the worker."""
    released = 0
    for order in expired_unpaid(now):
        try:
            cancel(order, None, "not paid in time")
        except IllegalTransition:
            db.session.rollback()  # paid meanwhile
            continue
        released += 1
    return released
