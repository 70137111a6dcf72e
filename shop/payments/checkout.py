"""Paying for an order: one PaymentIntent per attempt, confirmed on the server, checked by retrieving it.

The browser turns the card into a payment method with Stripe's script (card details never reach us)
and posts its id. The server confirms the intent with it, then believes only what Stripe answers:
status "requires_capture" for the order's amount and currency marks the order paid. A card that needs
the bank's check comes back "requires_action"; the browser completes the check with Stripe's script
and the server retrieves the intent again.

A declined card ends its intent (a "failed" ledger entry, cancelled at Stripe), and so does an intent
that can no longer serve (a "replaced" entry): the next attempt gets a fresh intent with its own
idempotency key (numbered by those entries), which works the same on Stripe and on localstripe (where a
declined intent cannot be confirmed again).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import sqlalchemy as sa

from shop import audit
from shop.database import begin_write
from shop.extensions import db
from shop.orders import services as orders
from shop.orders.models import AWAITING_PAYMENT, Order, PaymentEntry
from shop.payments.gateway import GatewayError, Intent, PaymentDeclined, PaymentGateway

# Ids of a PaymentMethod, or of a card from a token (localstripe's script can only make those).
PAYMENT_METHOD_ID = re.compile(r"^(pm|card|src|tok)_[A-Za-z0-9_]{1,200}$")
# Intents that can still be confirmed with a card.
OPEN_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action")


class PaymentProblem(Exception):
    """A sentence for the customer; the order is unchanged and may be paid again."""


@dataclass(frozen=True)
class Outcome:
    paid: bool = False
    # The bank wants to check the payment in the browser (3-D Secure): Stripe's script needs this.
    action_client_secret: str | None = None


# Ledger entries naming an intent of the order that can no longer take money ("cancelled": a hold
# that lapsed at Stripe, after which the order is paid again).
RETIRED_KINDS = ("failed", "replaced", "cancelled")


def _attempts(order: Order) -> int:
    """Intents of this order retired so far (one intent may have several such entries)."""
    return db.session.scalar(sa.select(sa.func.count(sa.distinct(PaymentEntry.reference))).where(
        PaymentEntry.order_id == order.id, PaymentEntry.kind.in_(RETIRED_KINDS))) or 0


def _reload(order: Order) -> Order:
    db.session.expire(order)
    return db.session.get(Order, order.id)


def payable_intent(order: Order, gateway: PaymentGateway) -> Intent | None:
    """The intent a submitted card confirms, made when the first card is submitted (never by showing
    the payment page: no GET changes anything). None when the order turns out to be paid already
    (Stripe authorised it, e.g. in another tab, before we heard of it)."""
    if order.payment_intent_id:
        intent = gateway.retrieve(order.payment_intent_id)
        if intent.status == "requires_capture" and _record(order, intent):
            return None
        if intent.status in OPEN_STATUSES and intent.amount == order.total_cents:
            return intent
        if intent.status == "processing":  # the bank is still deciding: a second intent could charge twice
            raise PaymentProblem("Your last payment is still being processed by your bank. Please reload "
                                 "this page in a minute.")
        _retire(order, intent.id, gateway, "replaced")
    intent = gateway.create_authorisation(order_id=order.id, order_number=order.number,
                                          amount_cents=order.total_cents, currency=order.currency,
                                          attempt=_attempts(order) + 1)
    orders.attach_intent(order, intent.id)
    order = _reload(order)
    if order.payment_intent_id != intent.id:  # another tab attached its intent first: use that one
        gateway.cancel(intent.id, order_id=order.id)
        if not order.payment_intent_id:
            raise PaymentProblem("This order changed while the page was open. Please reload the page.")
        return gateway.retrieve(order.payment_intent_id)
    return intent


def pay(order: Order, gateway: PaymentGateway, payment_method: str) -> Outcome:
    """Confirm the order's intent with the card the browser tokenised.

    :raise PaymentProblem: declined, or Stripe unreachable; the order stays unpaid.
    """
    if not PAYMENT_METHOD_ID.match(payment_method or ""):
        raise PaymentProblem("Enter your card details, then press Pay.")
    if order.status != AWAITING_PAYMENT:
        return Outcome(paid=order.status != "cancelled")
    try:
        intent = payable_intent(order, gateway)
        if intent is None:
            return Outcome(paid=True)
        if intent.status != "requires_capture":
            intent = gateway.confirm(intent.id, payment_method)
    except PaymentDeclined as declined:
        _declined(order, declined.intent_id or order.payment_intent_id, gateway)
        raise PaymentProblem(declined.message) from None
    except GatewayError:
        raise PaymentProblem("We could not reach our card processor. Nothing was charged; please try "
                             "again in a minute.") from None
    return _settle(order, intent, gateway)


def check(order: Order, gateway: PaymentGateway) -> Outcome:
    """After the bank's check in the browser: look the intent up and believe only Stripe."""
    if order.status != AWAITING_PAYMENT or not order.payment_intent_id:
        return Outcome(paid=order.status not in (AWAITING_PAYMENT, "cancelled"))
    try:
        intent = gateway.retrieve(order.payment_intent_id)
    except GatewayError:
        raise PaymentProblem("We could not reach our card processor to check the payment. Please "
                             "reload this page in a minute.") from None
    if intent.status == "requires_payment_method":  # the bank's check failed or was cancelled
        _declined(order, intent.id, gateway)
        raise PaymentProblem("Your bank did not confirm the payment. Nothing was charged; please try "
                             "again or use a different card.")
    return _settle(order, intent, gateway)


def _settle(order: Order, intent: Intent, gateway: PaymentGateway) -> Outcome:
    if intent.status == "requires_capture":
        if not _record(order, intent):
            # Not for this order as it stands (another amount, or the order was cancelled or its
            # intent retired meanwhile): release the hold on the card at once.
            _retire(order, intent.id, gateway, "replaced")
            if _reload(order).status == "cancelled":
                raise PaymentProblem("This order has been cancelled, so the payment was not taken. "
                                     "Please order again from your cart.")
            raise PaymentProblem("The payment did not match this order, so it was not accepted. Please "
                                 "try again; nothing will be charged.")
        return Outcome(paid=True)
    if intent.status == "requires_action":
        return Outcome(action_client_secret=intent.client_secret)
    raise PaymentProblem("The payment was not completed. Nothing was charged; please try again.")


def _record(order: Order, intent: Intent) -> bool:
    return orders.record_authorisation(order.id, intent.id, intent.amount_capturable or intent.amount,
                                       intent.currency)


def _declined(order: Order, intent_id: str | None, gateway: PaymentGateway) -> None:
    """Note the failed attempt and retire its intent so the next attempt starts afresh."""
    begin_write()
    audit.record("payment.declined", object_type="order", object_id=order.id, actor=order.customer,
                 intent=intent_id)
    db.session.commit()
    _retire(order, intent_id or f"none-{_attempts(order) + 1}", gateway, "failed")


def _retire(order: Order, intent_id: str, gateway: PaymentGateway, kind: str) -> None:
    """Take the intent off the order, note it in the ledger, then cancel it at Stripe. In that order:
    Stripe's "payment_intent.canceled" webhook for an intent that is still the order's cancels the order."""
    if not orders.hold_may_be_released(order, intent_id):
        return  # the order was paid with it meanwhile: keep it
    begin_write()
    if not db.session.scalars(sa.select(PaymentEntry.id).where(
            PaymentEntry.kind == kind, PaymentEntry.reference == intent_id)).first():
        db.session.add(PaymentEntry(order_id=order.id, kind=kind, amount_cents=order.total_cents,
                                    reference=intent_id))
    db.session.commit()
    if intent_id.startswith("pi_"):
        # Already cancelled, or stuck after a decline: either way it can no longer take money.
        with contextlib.suppress(GatewayError):
            gateway.cancel(intent_id, order_id=order.id)
