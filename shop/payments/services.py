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
from shop.orders import services as orders
from shop.orders.models import AWAITING_PAYMENT, Order, StripeEvent
from shop.payments.gateway import GatewayError, gateway_for_app


def _named_order(intent: dict[str, Any]) -> Order | None:
    """The order the intent's metadata names (ours set it), whether or not the intent is its own."""
    order_id = str((intent.get("metadata") or {}).get("order_id", ""))
    return db.session.get(Order, int(order_id)) if order_id.isdigit() and len(order_id) < 12 else None


def _order_for(intent: dict[str, Any]) -> Order | None:
    order = _named_order(intent)
    return order if order is not None and order.payment_intent_id == intent.get("id") else None


def _release_unwanted_hold(intent: dict[str, Any]) -> None:
    """A card authorised on an intent the order does not accept (retired for a new attempt, the
    order cancelled meanwhile, another amount): release the hold at once rather than leave the
    customer's money blocked for days. Only the order's own, accepted intent ever takes money."""
    order = _named_order(intent)
    if order is None:
        return
    if order.payment_intent_id == intent["id"]:
        orders.detach_intent(order, intent["id"])  # an unpaid order starts afresh on the payment page
    with contextlib.suppress(GatewayError):
        gateway_for_app(current_app).cancel(intent["id"], order_id=order.id)
    begin_write()
    audit.record("payment.hold_released", object_type="order", object_id=order.id, intent=intent["id"])
    db.session.commit()


def handle_event(event: dict[str, Any]) -> bool:
    """Apply a verified event. Returns False for a repeat delivery (nothing changes)."""
    if db.session.get(StripeEvent, event["id"]) is not None:
        db.session.rollback()
        return False
    intent = (event.get("data") or {}).get("object") or {}
    kind = event.get("type", "")
    is_intent = intent.get("object") == "payment_intent" and isinstance(intent.get("id"), str)
    order = _order_for(intent) if is_intent else None
    authorised = kind == "payment_intent.amount_capturable_updated" or (
        kind.startswith("payment_intent.") and intent.get("status") == "requires_capture")
    if is_intent and authorised and (order is None or not orders.record_authorisation(
            order.id, intent["id"], int(intent.get("amount") or 0), intent.get("currency", ""))):
        _release_unwanted_hold(intent)
    elif order is not None and not authorised:
        amount = int(intent.get("amount") or 0)
        if kind == "payment_intent.succeeded":
            # Captured. A late "payment_failed" or "canceled" never undoes this (see below).
            orders.record_capture(order.id, intent["id"], int(intent.get("amount_received") or amount))
        elif kind == "payment_intent.canceled":
            order = db.session.get(Order, order.id)
            if order.status == AWAITING_PAYMENT:
                orders.cancel(order, None, "payment cancelled")
        elif kind == "payment_intent.payment_failed":
            begin_write()
            audit.record("payment.failed", object_type="order", object_id=order.id,
                         intent=intent.get("id"))
            db.session.commit()
    begin_write()
    db.session.add(StripeEvent(id=event["id"], type=kind[:80], payload=json.dumps(event)[:100_000]))
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()  # the same event delivered twice at once: handled once above
        return False
    return True
