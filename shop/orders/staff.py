"""Staff operations that move money at Stripe and record it: release (capture), cancel (release
the authorisation), refund, and expiring unpaid orders.

Each one first checks in the database that the step is allowed (reading only), then asks Stripe,
then records the result in one database transaction (shop.orders.services). Stripe is never called
while the database write is open, so a slow Stripe holds no lock. When Stripe refuses or cannot be
reached, `ActionRefused` says so and the database is unchanged. When the database write fails after
Stripe acted, doing the step again is safe: release and cancel look at the intent's status first
(a captured intent is not captured again), a refund reuses its idempotency key (the order's refund
sequence number), and the ledger holds one entry per Stripe object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from shop.accounts.models import User
from shop.extensions import db
from shop.money import format_cents
from shop.orders import services
from shop.orders.models import AWAITING_PAYMENT, CANCELLED, PAID, REFUNDED, RELEASED, Order
from shop.payments.gateway import GatewayError, Intent, PaymentGateway

log = logging.getLogger(__name__)

# Intent statuses from which Stripe lets an intent be cancelled.
CANCELLABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "requires_capture")


class ActionRefused(Exception):
    """The step cannot be done now. `message` is a sentence for staff; `errors` maps a form field
    to its message when the input was wrong."""

    def __init__(self, message: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = dict(errors or {})


def _current(order: Order) -> Order:
    """The order as the database holds it now, not as this session last saw it."""
    fresh = db.session.get(Order, order.id, populate_existing=True)
    if fresh is None:
        raise ActionRefused("That order no longer exists.")
    return fresh


def _stripe_refused(error: GatewayError) -> ActionRefused:
    return ActionRefused(f"{error.message.rstrip('.')}. Nothing was changed; please try again in a moment.")


# Release -----------------------------------------------------------------------------------------


def release(order: Order, pharmacist: User, gateway: PaymentGateway) -> None:
    """Capture the authorised payment, then dispense: stock out of the earliest-expiring lots,
    prescription quantity from reserved to dispensed.

    :raise ActionRefused: not paid, not dispensable (stock), or Stripe refused or failed.
    """
    order = _current(order)
    if order.status != PAID:
        raise ActionRefused(services.refusal(order, RELEASED))
    if not order.payment_intent_id:
        raise ActionRefused(f"Order {order.number} has no card payment to capture.")
    shortfalls = services.dispense_shortfalls(order)
    if shortfalls:  # checked before the card is charged
        raise ActionRefused("Not enough stock to dispense: " + "; ".join(shortfalls) + ".")
    try:
        intent = _captured(order, gateway)
    except GatewayError as error:
        raise _stripe_refused(error) from error
    try:
        _record_release(order, pharmacist, intent.amount_received)
    except services.IllegalTransition as error:
        raise ActionRefused(str(error)) from error
    except services.CannotDispense as error:
        raise ActionRefused(f"The payment is captured, but {error}. Correct the stock and release the "
                            "order again: the card is not charged twice.") from error


def _captured(order: Order, gateway: PaymentGateway) -> Intent:
    """The order's intent, captured: by this call, or already (a release retried after the database
    failed, or one that ran at the same time). localstripe ignores idempotency keys, and Stripe
    answers a repeated capture key with the first answer; the status check covers both."""
    intent = gateway.retrieve(order.payment_intent_id or "")
    if intent.status == "requires_capture":
        return gateway.capture(intent.id, order_id=order.id)
    if intent.status == "succeeded":
        return intent
    if intent.status == "canceled":  # the hold lapsed, and its webhook has not reached us (yet)
        try:
            services.hold_lapsed(order, intent.id)
        except services.IllegalTransition as error:
            raise ActionRefused(str(error)) from error
        raise ActionRefused(f"The hold on the card for order {order.number} had ended at Stripe, so "
                            "nothing was captured. The order is back to awaiting payment and the "
                            "customer has been emailed a link to pay again.")
    raise ActionRefused(f"The card payment for order {order.number} is {intent.status.replace('_', ' ')} "
                        "at Stripe, so there is nothing to capture. Nothing was changed.")


def _record_release(order: Order, pharmacist: User, captured: int) -> None:
    try:
        services.release_for_dispensing(order, pharmacist, captured)
    except sa.exc.IntegrityError:
        # The capture webhook wrote the same ledger entry at the same moment: the write was rolled
        # back whole, and again it finds that entry and leaves it.
        services.release_for_dispensing(order, pharmacist, captured)


# Cancel ------------------------------------------------------------------------------------------


def cancel(order: Order, actor: User | None, reason: str, gateway: PaymentGateway) -> None:
    """Cancel the Stripe authorisation if there is one, then the order: stock and prescription
    quantity come back.

    :raise ActionRefused: no reason, a status past cancelling, a payment already captured at
        Stripe, or Stripe refused or failed.
    """
    reason = reason.strip()
    if not reason:
        raise ActionRefused("Give a reason for cancelling.", {"reason": "Give a reason for cancelling."})
    order = _current(order)
    if (order.status, CANCELLED) not in services.TRANSITIONS:
        raise ActionRefused(services.refusal(order, CANCELLED) + " Refund it instead if it was charged.")
    if order.payment_intent_id:
        try:
            _cancel_intent(order, gateway)
        except GatewayError as error:
            raise _stripe_refused(error) from error
    try:
        services.cancel(order, actor, reason)
    except services.IllegalTransition as error:
        raise ActionRefused(str(error)) from error


def _cancel_intent(order: Order, gateway: PaymentGateway) -> None:
    intent = gateway.retrieve(order.payment_intent_id or "")
    if intent.status == "succeeded":
        raise ActionRefused(
            f"The card payment for order {order.number} is already captured at Stripe, so it cannot be "
            "cancelled. Release the order again to finish recording the capture, then refund it.")
    if intent.status in CANCELLABLE:
        gateway.cancel(intent.id, order_id=order.id)
    elif intent.status != "canceled":  # "processing": Stripe decides shortly
        raise ActionRefused(f"The card payment for order {order.number} is {intent.status} at Stripe; "
                            "try again in a few minutes. Nothing was changed.")


# Refund ------------------------------------------------------------------------------------------


def refund(order: Order, admin: User, amount_cents: int | None, gateway: PaymentGateway, reason: str) -> int:
    """Refund `amount_cents` (None: everything still refundable) of a captured payment. Returns the
    amount refunded.

    :raise ActionRefused: not captured, an amount that is not positive or more than is left, no
        reason, or Stripe refused or failed. Nothing is changed.
    """
    reason = reason.strip()
    order = _current(order)
    if (order.status, REFUNDED) not in services.TRANSITIONS or not order.payment_intent_id:
        raise ActionRefused(services.refusal(order, REFUNDED) + " Only a captured payment can be refunded.")
    payment = services.payment_summary(order)
    left = payment.refundable
    if left <= 0:
        raise ActionRefused(f"Nothing is left to refund on order {order.number}.")
    amount = left if amount_cents is None else amount_cents
    errors = {}
    if amount <= 0:
        errors["amount"] = "Enter an amount of more than zero."
    elif amount > left:
        errors["amount"] = (f"At most {format_cents(left, order.currency)} can be refunded "
                            f"({format_cents(payment.captured, order.currency)} captured, "
                            f"{format_cents(payment.refunded, order.currency)} already refunded).")
    if not reason:
        errors["reason"] = "Give a reason for the refund."
    if errors:
        raise ActionRefused(" ".join(errors.values()), errors)
    try:
        # The sequence number keys the idempotency of this refund: a retry after a database failure
        # gets Stripe's first answer back, and the ledger already knows that refund's id.
        made = gateway.refund(order.payment_intent_id, order_id=order.id, amount_cents=amount,
                              sequence=payment.refund_count + 1)
    except GatewayError as error:
        raise _stripe_refused(error) from error
    if made.status in ("failed", "canceled"):
        raise ActionRefused(f"Stripe could not make the refund (status {made.status}). Nothing was changed.")
    if not services.record_refund(order, admin, made.amount, made.id, reason):
        # Stripe answered a repeated request (the same refund number) with a refund already recorded,
        # e.g. two admins refunding at once: nothing new was refunded.
        raise ActionRefused(f"That refund was already made ({format_cents(made.amount, order.currency)}); "
                            "nothing more was refunded. Check the payment ledger before trying again.")
    return made.amount


# Unpaid orders -----------------------------------------------------------------------------------


@dataclass
class ExpiryReport:
    cancelled: int = 0
    paid: int = 0  # paid at the last second: kept, marked paid
    waiting: list[str] = field(default_factory=list)  # order numbers Stripe could not settle yet


def expire_unpaid(gateway: PaymentGateway) -> ExpiryReport:
    """Cancel the orders not paid in time, giving back stock and prescription quantity.

    An order with a PaymentIntent is checked with Stripe first: an intent that is authorised (the
    customer paid at the last second) marks the order paid instead; any other is cancelled at Stripe
    so it can no longer be paid, then the order is cancelled. An order Stripe cannot answer for is
    left as it is, for the next run. Run by `flask shop release-expired` and by the worker.
    """
    report = ExpiryReport()
    due = [(o.id, o.number) for o in services.expired_unpaid()]
    for order_id, number in due:
        db.session.rollback()  # a fresh read for each order; nothing is pending
        order = db.session.get(Order, order_id)
        if order is None:
            continue
        try:
            outcome = _expire(order, gateway)
        except GatewayError as error:
            log.warning("order %s: not expired this time: %s", number, error.message)
            db.session.rollback()
            report.waiting.append(number)
            continue
        except services.IllegalTransition:
            db.session.rollback()  # paid or cancelled meanwhile (a webhook): nothing more to do
            continue
        if outcome == "paid":
            report.paid += 1
        elif outcome == "cancelled":
            report.cancelled += 1
        else:
            report.waiting.append(number)
    return report


def _expire(order: Order, gateway: PaymentGateway) -> str:
    if order.payment_intent_id:
        intent = gateway.retrieve(order.payment_intent_id)
        if intent.status in ("requires_capture", "succeeded"):
            if services.record_authorisation(order.id, intent.id, intent.amount, intent.currency):
                return "paid"
            if intent.status == "succeeded":
                return "waiting"  # charged, yet not for this order's total: for staff to look at
        if intent.status == "processing":
            return "waiting"
        # Detach first: a payment the customer completes from now on can no longer mark the order
        # paid (and the payment page releases its hold), so cancelling below cannot undo a payment.
        if not services.detach_intent(order, intent.id):
            raise services.IllegalTransition("paid meanwhile")
        if intent.status in CANCELLABLE:  # so that it can no longer be paid
            gateway.cancel(intent.id, order_id=order.id)
    services.cancel(order, None, "not paid in time", only_from=AWAITING_PAYMENT)
    return "cancelled"
