"""Stripe webhooks: signature on the raw body, each event once, any order."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time

import pytest
import sqlalchemy as sa
from flask import Flask

from shop.accounts.models import User
from shop.cart import services as cart
from shop.extensions import db
from shop.orders import services as orders
from shop.orders.models import Order, PaymentEntry, StripeEvent
from shop.payments.gateway import gateway_for_app
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


def database_rows() -> dict[str, list[tuple]]:
    """Every row of every table, to show that a request changed nothing. The signed-in session's
    "last seen" (user_session) is bookkeeping of the visit itself, not a change the request made."""
    db.session.rollback()
    return {table.name: sorted(map(tuple, db.session.execute(sa.select(table)).all()), key=repr)
            for table in db.metadata.sorted_tables if table.name != "user_session"}


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


# Malformed events ---------------------------------------------------------------------------------


def malformed(order: Order, case: str) -> dict:
    """A correctly signed event for the order's own intent, wrong in one way: were it read as it
    stands, the order would be marked paid."""
    good = event(f"evt_bad_{case}", "payment_intent.amount_capturable_updated", order, "requires_capture")
    intent = good["data"]["object"]
    changes = {
        "object is a list": lambda: good["data"].update(object=[intent]),
        "object is a string": lambda: good["data"].update(object=intent["id"]),
        "metadata is a string": lambda: intent.update(metadata=f"order_id={order.id}"),
        "metadata value is a number": lambda: intent.update(metadata={"order_id": order.id}),
        "amount is a string": lambda: intent.update(amount=str(order.total_cents)),
        "amount is a float": lambda: intent.update(amount=order.total_cents + 0.0),
        "amount is true": lambda: intent.update(amount=True),
        "amount is huge": lambda: intent.update(amount=2**63),
        "amount is negative": lambda: intent.update(amount=-order.total_cents),
        "amount is missing": lambda: intent.pop("amount"),
        "amount received is a string": lambda: intent.update(amount_received="all"),
        "id is a number": lambda: intent.update(id=12),
        "id has a NUL": lambda: intent.update(id="pi_test\x00123"),
        "status is a list": lambda: intent.update(status=["requires_capture"]),
        "currency is an object": lambda: intent.update(currency={"code": "usd"}),
        "event id has a NUL": lambda: good.update(id="evt_\x00"),
        "event id is 10,000 characters": lambda: good.update(id="evt_" + "9" * 10_000),
    }
    changes[case]()
    return good


MALFORMED = ["object is a list", "object is a string", "metadata is a string", "metadata value is a number",
             "amount is a string", "amount is a float", "amount is true", "amount is huge",
             "amount is negative", "amount is missing", "amount received is a string", "id is a number",
             "id has a NUL", "status is a list", "currency is an object", "event id has a NUL",
             "event id is 10,000 characters"]


@pytest.mark.parametrize("case", MALFORMED)
def test_a_signed_event_of_the_wrong_shape_is_refused_logged_and_changes_nothing(
    app: Flask, client, users: dict[str, int], caplog: pytest.LogCaptureFixture, case: str
) -> None:
    order = placed_order(app, users)
    with app.app_context():
        before = database_rows()
    body, headers = signed(malformed(order, case))

    with caplog.at_level(logging.WARNING, logger="shop.payments.routes"):
        response = post(client, body, headers)

    assert response.status_code == 400  # Stripe shows the failed delivery; it is not taken as handled
    assert "signed but malformed" in caplog.text
    with app.app_context():
        assert database_rows() == before  # not paid, no ledger, no email, and the event is not stored


def test_an_order_id_in_metadata_that_names_no_order_is_ignored(
    app: Flask, client, users: dict[str, int]
) -> None:
    order = placed_order(app, users)
    for n, order_id in enumerate(["\u00b2", "\u0663", "99999999999999999999", "-1", "", "x"]):
        body, headers = signed(event(f"evt_meta_{n}", "payment_intent.amount_capturable_updated", order,
                                     "requires_capture", metadata={"order_id": order_id}))
        assert post(client, body, headers).status_code == 200
    with app.app_context():
        assert db.session.get(Order, order.id).status == "awaiting_payment"


# An event the order does not accept ----------------------------------------------------------------


def test_an_authorisation_event_naming_another_amount_leaves_a_paid_orders_hold_alone(
    stripe_app: Flask, users: dict[str, int]
) -> None:
    from shop.orders import staff
    from tests.orders.test_staff_orders import fetch, paid

    gateway = gateway_for_app(stripe_app)
    placed = paid(stripe_app, users, gateway, "wh-other-amount")
    with stripe_app.app_context():
        order = fetch(placed.number)
    for n, kind in enumerate(["payment_intent.amount_capturable_updated", "payment_intent.succeeded"]):
        body, headers = signed(event(f"evt_other_{n}", kind, order, "requires_capture", amount=100))
        assert post(stripe_app.test_client(), body, headers).status_code == 200

    # The card hold the order relies on is still there, and the order still says paid.
    assert intent_status(stripe_app, placed.intent_id) == "requires_capture"
    with stripe_app.app_context():
        assert fetch(placed.number).status == "paid"
        # So the pharmacist can release it: the card is charged the order's total.
        staff.release(fetch(placed.number), db.session.get(User, users["pharmacist"]), gateway)
        assert fetch(placed.number).status == "released"
    intent = gateway_for_app(stripe_app).retrieve(placed.intent_id)
    assert (intent.status, intent.amount_received) == ("succeeded", order.total_cents)


# A paid order's hold cancelled at Stripe -----------------------------------------------------------


def test_a_paid_orders_hold_cancelled_at_stripe_asks_the_customer_to_pay_again(
    stripe_app: Flask, users: dict[str, int], signed_in
) -> None:
    from shop.catalog.models import Strength
    from shop.notifications.models import OutboxMessage
    from shop.prescriptions.models import Prescription
    from tests.orders.test_payment_page import pay
    from tests.orders.test_staff_orders import fetch, ledger, paid

    gateway = gateway_for_app(stripe_app)
    placed = paid(stripe_app, users, gateway, "wh-lapsed")
    with stripe_app.app_context():
        order = fetch(placed.number)
        gateway.cancel(placed.intent_id, order_id=order.id)  # what Stripe does when the hold lapses
    body, headers = signed(event("evt_lapsed", "payment_intent.canceled", order, "canceled",
                                 cancellation_reason="automatic"))

    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert post(stripe_app.test_client(), body, headers).status_code == 200
    assert post(stripe_app.test_client(), body, headers).status_code == 200  # a repeat changes nothing

    with stripe_app.app_context():
        order = fetch(placed.number)
        assert (order.status, order.payment_intent_id) == ("awaiting_payment", None)
        # As long to pay as a new order, from now; stock and prescription units stay reserved.
        assert dt.timedelta(minutes=59) < order.pay_by - started < dt.timedelta(minutes=61)
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 90
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 90
        assert order.lines[0].reservations[0].state == "reserved"
        assert ledger(order.id) == [("authorised", order.total_cents), ("cancelled", order.total_cents)]
        assert orders.payment_state(order) == "authorisation cancelled"
        mail = db.session.scalars(sa.select(OutboxMessage).where(
            OutboxMessage.kind == "order_payment_needed")).one()
        assert mail.to_address == "customer@example.com"
        assert f"http://localhost/orders/{placed.number}/pay" in mail.body
        assert "nothing has been charged" in mail.body

    customer = signed_in("customer")
    page = customer.get(f"/orders/{placed.number}").get_data(as_text=True)
    assert "Awaiting payment" in page and "Pay now" in page
    assert "The hold on your card ended; payment needed again" in page
    # Paying again works, with a fresh intent; the order is paid once more.
    assert pay(customer, placed.number, "pm_card_visa").status_code == 302
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert order.status == "paid" and order.payment_intent_id not in (None, placed.intent_id)
        summary = orders.payment_summary(order)
        assert (summary.state, summary.held) == ("authorised", order.total_cents)
        assert intent_status(stripe_app, order.payment_intent_id) == "requires_capture"


def test_after_the_hold_lapsed_an_order_not_paid_again_in_time_is_released(
    stripe_app: Flask, users: dict[str, int]
) -> None:
    from shop.catalog.models import Strength
    from shop.orders import staff
    from shop.prescriptions.models import Prescription
    from tests.orders.test_staff_orders import fetch, paid

    gateway = gateway_for_app(stripe_app)
    placed = paid(stripe_app, users, gateway, "wh-lapsed-expiry")
    with stripe_app.app_context():
        gateway.cancel(placed.intent_id, order_id=placed.id)
        body, headers = signed(event("evt_lapsed_2", "payment_intent.canceled", fetch(placed.number),
                                     "canceled", cancellation_reason="automatic"))
    assert post(stripe_app.test_client(), body, headers).status_code == 200

    with stripe_app.app_context():
        assert staff.expire_unpaid(gateway).cancelled == 0  # its new time to pay has not run out
        db.session.execute(sa.update(Order).where(Order.id == placed.id).values(
            pay_by=dt.datetime(2020, 1, 1)))
        db.session.commit()
        assert staff.expire_unpaid(gateway).cancelled == 1
        order = fetch(placed.number)
        assert order.status == "cancelled"
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 0
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 0


def test_the_shops_own_cancel_of_a_paid_order_is_not_taken_for_a_lapsed_hold(
    stripe_app: Flask, users: dict[str, int]
) -> None:
    """Cancelling a paid order asks Stripe first, then cancels the order here. Stripe's
    "canceled" event may arrive in between: it must not send the order back to payment nor email
    the customer a link to pay for an order the pharmacist is cancelling."""
    from shop.notifications.models import OutboxMessage
    from shop.orders import staff
    from shop.payments.gateway import PaymentGateway
    from tests.orders.test_staff_orders import fetch, paid

    gateway = gateway_for_app(stripe_app)
    placed = paid(stripe_app, users, gateway, "wh-own-cancel")

    class DeliversTheWebhookAtOnce(PaymentGateway):
        """The real gateway; its cancel is followed at once by Stripe's event for it (as Stripe
        sends it: canceled, with no reason, since our request gives none)."""

        def __init__(self) -> None:
            self.__dict__.update(gateway.__dict__)

        def cancel(self, intent_id: str, *, order_id: int):
            intent = super().cancel(intent_id, order_id=order_id)
            assert intent.cancellation_reason not in ("automatic", "expired")
            with stripe_app.app_context():
                body, headers = signed(event("evt_own_cancel", "payment_intent.canceled",
                                             fetch(placed.number), "canceled"))
            assert post(stripe_app.test_client(), body, headers).status_code == 200
            return intent

    with stripe_app.app_context():
        pharmacist = db.session.get(User, users["pharmacist"])
        staff.cancel(fetch(placed.number), pharmacist, "clinical: interaction", DeliversTheWebhookAtOnce())
        order = fetch(placed.number)
        assert order.status == "cancelled"
        kinds = list(db.session.scalars(sa.select(OutboxMessage.kind).order_by(OutboxMessage.id)))
        assert "order_payment_needed" not in kinds and "order_cancelled" in kinds
    assert intent_status(stripe_app, placed.intent_id) == "canceled"
