"""Stripe webhook events: each stored once by its id, handled idempotently and in any order."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import sqlalchemy as sa
from flask import current_app

from shop import audit
from shop.database import begin_write
from shop.extensions import db
from shop.numbers import parse_id
from shop.orders import services as orders
from shop.orders.models import AWAITING_PAYMENT, PAID, Order, StripeEvent
from shop.payments.gateway import GatewayError, Intent, gateway_for_app


def _named_order(intent: Intent) -> Order | None:
    """The order the intent's metadata names (ours set it), whether or not the intent is its own."""
    order_id = parse_id(intent.metadata.get("order_id"))
    return db.session.get(Order, order_id) if order_id is not None else None


def _order_for(intent: Intent) -> Order | None:
    order = _named_order(intent)
    return order if order is not None and order.payment_intent_id == intent.id else None


def _release_unwanted_hold(intent: Intent) -> None:
    """A card authorised on an intent the order does not accept (retired for a new attempt, the
    order cancelled meanwhile, another amount for an unpaid order): release the hold at once rather
    than leave the customer's money blocked for days. Never the intent a paid order relies on: an
    event naming another amount for it changes nothing (the mismatch is in the audit log)."""
    order = _named_order(intent)
    if order is None or not orders.hold_may_be_released(order, intent.id):
        return
    with contextlib.suppress(GatewayError):
        gateway_for_app(current_app).cancel(intent.id, order_id=order.id)
    begin_write()
    audit.record("payment.hold_released", object_type="order", object_id=order.id, intent=intent.id)
    db.session.commit()


def _cancelled_at_stripe(order: Order, intent: Intent) -> None:
    """The order's own intent was cancelled at Stripe: an unpaid order is cancelled; a paid one
    (its hold lapsed, after about 7 days) needs paying again."""
    order = db.session.get(Order, order.id, populate_existing=True)
    try:
        if order.status == AWAITING_PAYMENT:
            orders.cancel(order, None, "payment cancelled", only_from=AWAITING_PAYMENT)
        elif order.status == PAID:
            orders.hold_lapsed(order, intent.id)
    except orders.IllegalTransition:
        db.session.rollback()  # moved on meanwhile (paid, released or cancelled): nothing to undo


def handle_event(event: dict[str, Any], intent: Intent | None) -> bool:
    """Apply a verified event whose intent `webhook_intent` has checked. Returns False for a repeat
    delivery (nothing changes)."""
    if db.session.get(StripeEvent, event["id"]) is not None:
        db.session.rollback()
        return False
    kind = event["type"]
    order = _order_for(intent) if intent is not None else None
    authorised = intent is not None and (
        kind == "payment_intent.amount_capturable_updated" or intent.status == "requires_capture")
    if intent is not None and authorised and (order is None or not orders.record_authorisation(
            order.id, intent.id, intent.amount, intent.currency)):
        _release_unwanted_hold(intent)
    elif intent is not None and order is not None and not authorised:
        if kind == "payment_intent.succeeded":
            # Captured. A late "payment_failed" or "canceled" never undoes this (see below).
            orders.record_capture(order.id, intent.id, intent.amount_received or intent.amount)
        elif kind == "payment_intent.canceled" and intent.status == "canceled":
            _cancelled_at_stripe(order, intent)
        elif kind == "payment_intent.payment_failed":
            begin_write()
            audit.record("payment.failed", object_type="order", object_id=order.id, intent=intent.id)
            db.session.commit()
    begin_write()
    db.session.add(StripeEvent(id=event["id"], type=kind, payload=json.dumps(event)[:100_000]))
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()  # the same event delivered twice at once: handled once above
        return False
    return True
