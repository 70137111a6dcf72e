"""Stripe webhooks: signature on the raw body, each event once, any order."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import sqlalchemy as sa
from flask import Flask

from shop.accounts.models import User
from shop.cart import services as cart
from shop.extensions import db
from shop.orders import services as orders
from shop.orders.models import Order, PaymentEntry, StripeEvent
from tests.orders.test_checkout import address_for, package

SECRET = "whsec_localstripe"


def signed(event: dict, secret: str = SECRET, at: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(event).encode()
    stamp = int(at if at is not None else time.time())
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={stamp},v1={signature}", "Content-Type": "application/json"}


def event(event_id: str, kind: str, order: Order, status: str, **extra: object) -> dict:
    intent = {"id": order.payment_intent_id, "object": "payment_intent", "amount": order.total_cents,
              "currency": "usd", "status": status, "metadata": {"order_id": str(order.id)}, **extra}
    return {"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
            "data": {"object": intent}}


def placed_order(app: Flask, users: dict[str, int]) -> Order:
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        cart.add(customer, package(100, "100-mg").id)
        order = orders.place_order(customer, address_for(users["customer"]), "wh-token")
        orders.attach_intent(order, "pi_test_123")
        return db.session.get(Order, order.id)


def post(client, body: bytes, headers: dict):
    return client.post("/stripe/webhook", data=body, headers=headers)


def test_signature_good_tampered_stale_and_missing(app: Flask, client, users: dict[str, int]) -> None:
    order = placed_order(app, users)
    body, headers = signed(event("evt_1", "payment_intent.amount_capturable_updated", order, "requires_capture"))
    tampered = body.replace(str(order.total_cents).encode(), b"1")
    assert tampered != body
    assert post(client, tampered, headers).status_code == 400  # tampered amount
    assert post(client, body, {**headers, "Stripe-Signature": "t=1,v1=00"}).status_code == 400
    stale_body, stale_headers = signed(event("evt_2", "payment_intent.amount_capturable_updated", order,
                                             "requires_capture"), at=int(time.time()) - 3600)
    assert post(client, stale_body, stale_headers).status_code == 400
    wrong_body, wrong_headers = signed(event("evt_3", "x", order, "requires_capture"), secret="whsec_other")
    assert post(client, wrong_body, wrong_headers).status_code == 400
    with app.app_context():
        assert db.session.get(Order, order.id).status == "awaiting_payment"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(StripeEvent)) == 0
    assert post(client, body, headers).status_code == 200
    with app.app_context():
        assert db.session.get(Order, order.id).status == "paid"


def test_a_repeated_event_changes_nothing(app: Flask, client, users: dict[str, int]) -> None:
    order = placed_order(app, users)
    body, headers = signed(event("evt_10", "payment_intent.amount_capturable_updated", order, "requires_capture"))
    assert post(client, body, headers).status_code == 200
    assert post(client, body, headers).status_code == 200
    with app.app_context():
        entries = db.session.scalars(sa.select(PaymentEntry.kind)).all()
        assert entries == ["authorised"]
        assert len(db.session.get(Order, order.id).events) == 2  # placed, paid


def test_wrong_amount_does_not_mark_paid(app: Flask, client, users: dict[str, int]) -> None:
    order = placed_order(app, users)
    body, headers = signed(event("evt_20", "payment_intent.amount_capturable_updated", order,
                                 "requires_capture", amount=1))
    assert post(client, body, headers).status_code == 200
    with app.app_context():
        assert db.session.get(Order, order.id).status == "awaiting_payment"


def test_events_in_any_order_and_a_late_failure(app: Flask, client, users: dict[str, int]) -> None:
    order = placed_order(app, users)
    # Captured arrives before authorised; then a stale failure and cancellation arrive last.
    for event_id, kind, status in [("evt_31", "payment_intent.succeeded", "succeeded"),
                                   ("evt_30", "payment_intent.amount_capturable_updated", "requires_capture"),
                                   ("evt_32", "payment_intent.payment_failed", "requires_payment_method")]:
        body, headers = signed(event(event_id, kind, order, status, amount_received=order.total_cents))
        assert post(client, body, headers).status_code == 200
    with app.app_context():
        saved = db.session.get(Order, order.id)
        assert saved.status == "paid"
        assert sorted(db.session.scalars(sa.select(PaymentEntry.kind)).all()) == ["authorised", "captured"]


def test_cancelled_payment_releases_an_unpaid_order(app: Flask, client, users: dict[str, int]) -> None:
    order = placed_order(app, users)
    body, headers = signed(event("evt_40", "payment_intent.canceled", order, "canceled"))
    assert post(client, body, headers).status_code == 200
    with app.app_context():
        assert db.session.get(Order, order.id).status == "cancelled"


def authorised_intent(stripe_app: Flask, order: Order) -> str:
    """An intent for the order, authorised at localstripe (a hold on the card)."""
    from shop.payments.gateway import gateway_for_app

    with stripe_app.app_context():
        gateway = gateway_for_app(stripe_app)
        intent = gateway.create_authorisation(order_id=order.id, order_number=order.number,
                                              amount_cents=order.total_cents, currency="usd", attempt=7)
        gateway.confirm(intent.id, "pm_card_visa")
        return intent.id


def intent_status(stripe_app: Flask, intent_id: str) -> str:
    from shop.payments.gateway import gateway_for_app

    with stripe_app.app_context():
        return gateway_for_app(stripe_app).retrieve(intent_id).status


def test_a_hold_on_an_intent_the_order_does_not_use_is_released(
    stripe_app: Flask, users: dict[str, int]
) -> None:
    # E.g. an intent retired for a new attempt that the bank then authorised anyway.
    order = placed_order(stripe_app, users)  # its own intent is pi_test_123
    stray = authorised_intent(stripe_app, order)
    body, headers = signed(event("evt_stray", "payment_intent.amount_capturable_updated", order,
                                 "requires_capture", id=stray))

    assert post(stripe_app.test_client(), body, headers).status_code == 200

    assert intent_status(stripe_app, stray) == "canceled"
    with stripe_app.app_context():
        assert db.session.get(Order, order.id).status == "awaiting_payment"


def test_a_hold_authorised_after_the_order_was_cancelled_is_released(
    stripe_app: Flask, users: dict[str, int]
) -> None:
    order = placed_order(stripe_app, users)
    late = authorised_intent(stripe_app, order)
    with stripe_app.app_context():
        db.session.execute(sa.update(Order).where(Order.id == order.id).values(payment_intent_id=late))
        db.session.commit()
        orders.cancel(db.session.get(Order, order.id), None, "not paid in time")
        order = db.session.get(Order, order.id)
    body, headers = signed(event("evt_late", "payment_intent.amount_capturable_updated", order,
                                 "requires_capture"))

    assert post(stripe_app.test_client(), body, headers).status_code == 200

    assert intent_status(stripe_app, late) == "canceled"
    with stripe_app.app_context():
        assert db.session.get(Order, order.id).status == "cancelled"
