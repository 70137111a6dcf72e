"""Stripe webhook events: each stored once by its id, handled idempotently and in any order."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from shop import audit
from shop.database import begin_write
from shop.extensions import db
from shop.orders import services as orders
from shop.orders.models import AWAITING_PAYMENT, Order, StripeEvent


def _order_for(intent: dict[str, Any]) -> Order | None:
    order_id = str((intent.get("metadata") or {}).get("order_id", ""))
    if not order_id.isdigit():
        return None
    order = db.session.get(Order, int(order_id))
    return order if order is not None and order.payment_intent_id == intent.get("id") else None


def handle_event(event: dict[str, Any]) -> bool:
    """Apply a verified event. Returns False for a repeat delivery (nothing changes)."""
    if db.session.get(StripeEvent, event["id"]) is not None:
        db.session.rollback()
        return False
    intent = (event.get("data") or {}).get("object") or {}
    kind = event.get("type", "")
    order = _order_for(intent) if intent.get("object") == "payment_intent" else None
    if order is not None:
        amount = int(intent.get("amount") or 0)
        if kind == "payment_intent.amount_capturable_updated" or (
            kind.startswith("payment_intent.") and intent.get("status") == "requires_capture"
        ):
            orders.record_authorisation(order.id, intent["id"], amount, intent.get("currency", ""))
        elif kind == "payment_intent.succeeded":
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
