"""The payment step against the real localstripe: intents made on the server for the order total,
confirmed with the card the browser tokenised, and believed only after retrieving them from Stripe."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import stripe
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import User
from shop.cart import services as cart
from shop.catalog.models import Strength
from shop.extensions import db
from shop.notifications.models import OutboxMessage
from shop.orders import services as orders
from shop.orders.models import AWAITING_PAYMENT, PAID, Order, PaymentEntry
from shop.payments.gateway import gateway_for_app
from tests.conftest import csrf_token
from tests.orders.test_checkout import address_for, package, prescription
from tests.orders.test_webhooks import database_rows
from tests.stripe_server import SECRET_KEY


@pytest.fixture
def customer(signed_in: Callable[[str], FlaskClient]) -> FlaskClient:
    return signed_in("customer")


@pytest.fixture
def order_number(stripe_app: Flask, users: dict[str, int], customer: FlaskClient) -> str:
    """An unpaid order of the customer: one 90 pack of naltrexone 50 mg under an approved prescription."""
    with stripe_app.app_context():
        prescription(users["customer"], quantity=90)
        address = address_for(users["customer"])
        me = db.session.get(User, users["customer"])
        cart.add(me, package(90).id)
        return orders.place_order(me, address, "pay-test").number


def the_order(number: str) -> Order:
    db.session.expire_all()
    return db.session.scalars(sa.select(Order).where(Order.number == number)).one()


def pay(client: FlaskClient, number: str, payment_method: str) -> object:
    token = csrf_token(client, f"/orders/{number}")
    return client.post(f"/orders/{number}/pay", data={"csrf_token": token, "payment_method": payment_method})


def intents_at_stripe(localstripe: str, number: str) -> list[str]:
    """The ids of every PaymentIntent localstripe holds for the order (by our metadata: its number,
    as ids start again in each test's database while localstripe keeps every intent)."""
    client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe})
    return [intent.id for intent in client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
            if (intent.to_dict().get("metadata") or {}).get("order_number") == number]


def test_showing_the_payment_page_changes_nothing_here_or_at_stripe(
    stripe_app: Flask, customer: FlaskClient, order_number: str, localstripe: str
) -> None:
    with stripe_app.app_context():
        before = database_rows()

    for _ in range(3):  # reloads, other tabs: any number of GETs
        page = customer.get(f"/orders/{order_number}/pay")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Pay $595.68" in html  # the 90 pack from the database; shipping is free from $100
        assert f'src="{localstripe}/js.stripe.com/v3/"' in html
        policy = page.headers["Content-Security-Policy"]
        assert f"script-src 'self' {localstripe}" in policy and f"connect-src 'self' {localstripe}" in policy

    assert intents_at_stripe(localstripe, order_number) == []
    with stripe_app.app_context():
        assert database_rows() == before
        assert the_order(order_number).payment_intent_id is None


def test_submitting_the_card_makes_one_manual_capture_intent_for_the_order_total(
    stripe_app: Flask, customer: FlaskClient, order_number: str, localstripe: str
) -> None:
    assert pay(customer, order_number, "pm_card_visa").status_code == 302

    with stripe_app.app_context():
        order = the_order(order_number)
        intent = gateway_for_app(stripe_app).retrieve(order.payment_intent_id)
        assert (intent.amount, intent.currency, intent.capture_method) == (59568, "usd", "manual")
        assert intent.metadata["order_id"] == str(order.id)
        assert intents_at_stripe(localstripe, order_number) == [order.payment_intent_id]


def test_other_pages_keep_their_strict_policy(stripe_app: Flask, customer: FlaskClient, localstripe: str) -> None:
    assert localstripe not in customer.get("/orders").headers["Content-Security-Policy"]


def test_paying_with_a_good_card_authorises_and_marks_the_order_paid(
    stripe_app: Flask, customer: FlaskClient, order_number: str
) -> None:
    response = pay(customer, order_number, "pm_card_visa")

    assert response.status_code == 302 and response.headers["Location"] == f"/orders/{order_number}"
    page = customer.get(f"/orders/{order_number}").get_data(as_text=True)
    assert "Paid (card authorised)" in page and "Payment authorised" in page
    with stripe_app.app_context():
        order = the_order(order_number)
        assert order.status == PAID
        intent = gateway_for_app(stripe_app).retrieve(order.payment_intent_id)
        assert intent.status == "requires_capture"  # authorised, not charged
        assert orders.ledger_total(order, "authorised") == 59568
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
            OutboxMessage.kind == "order_paid")) == 1
    # Paying again changes nothing and does not authorise a second time.
    assert pay(customer, order_number, "pm_card_visa").status_code == 302
    with stripe_app.app_context():
        assert orders.ledger_total(the_order(order_number), "authorised") == 59568


def test_a_declined_card_says_so_keeps_the_order_and_the_next_card_works(
    stripe_app: Flask, customer: FlaskClient, order_number: str
) -> None:
    response = pay(customer, order_number, "pm_card_chargeCustomerFail")

    assert response.status_code == 422
    assert "Your card was declined" in response.get_data(as_text=True)
    with stripe_app.app_context():
        order = the_order(order_number)
        assert order.status == AWAITING_PAYMENT and order.payment_intent_id is None
        declined_intent = db.session.scalars(sa.select(PaymentEntry.reference).where(
            PaymentEntry.order_id == order.id, PaymentEntry.kind == "failed")).one()
        assert gateway_for_app(stripe_app).retrieve(declined_intent).status == "canceled"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PaymentEntry).where(
            PaymentEntry.order_id == order.id, PaymentEntry.kind == "failed")) == 1

    assert pay(customer, order_number, "pm_card_visa").status_code == 302
    with stripe_app.app_context():
        order = the_order(order_number)
        assert order.status == PAID and order.payment_intent_id != declined_intent


@pytest.mark.parametrize("value", ["", "4242424242424242", "pm_card_visa'; drop table", "x" * 300])
def test_a_payment_method_that_is_not_an_id_is_refused(
    stripe_app: Flask, customer: FlaskClient, order_number: str, value: str
) -> None:
    response = pay(customer, order_number, value)

    assert response.status_code == 422
    assert "Enter your card details" in response.get_data(as_text=True)
    with stripe_app.app_context():
        assert the_order(order_number).status == AWAITING_PAYMENT


def test_an_authorisation_for_another_amount_is_not_accepted(
    stripe_app: Flask, customer: FlaskClient, order_number: str
) -> None:
    # An intent for $1.00 authorised and attached to the order (as a tampered flow would try):
    # the server compares with the order's total from the database and refuses it.
    with stripe_app.app_context():
        gateway = gateway_for_app(stripe_app)
        order = the_order(order_number)
        cheap = gateway.create_authorisation(order_id=order.id, order_number=order.number,
                                             amount_cents=100, currency="usd", attempt=99)
        gateway.confirm(cheap.id, "pm_card_visa")
        orders.attach_intent(order, cheap.id)

    response = customer.post(f"/orders/{order_number}/pay/check",
                             data={"csrf_token": csrf_token(customer, f"/orders/{order_number}")})

    assert response.status_code == 422
    assert "did not match this order" in response.get_data(as_text=True)
    with stripe_app.app_context():
        assert the_order(order_number).status == AWAITING_PAYMENT
    # The next card submitted gets an intent for the right amount.
    assert pay(customer, order_number, "pm_card_visa").status_code == 302
    with stripe_app.app_context():
        order = the_order(order_number)
        assert order.status == PAID
        assert gateway_for_app(stripe_app).retrieve(order.payment_intent_id).amount == 59568
        assert gateway_for_app(stripe_app).retrieve(cheap.id).status == "canceled"
        # Retired intents are counted, so the next attempt's idempotency key is a new one.
        assert db.session.scalars(sa.select(PaymentEntry.kind).where(
            PaymentEntry.order_id == order.id, PaymentEntry.reference == cheap.id)).all() == ["replaced"]


def three_d_secure_card(localstripe: str) -> str:
    client = stripe.StripeClient(SECRET_KEY, base_addresses={"api": localstripe})
    method = client.v1.payment_methods.create({"type": "card", "card": {
        "number": "4000002760003184", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    return method.id


def bank_check(localstripe: str, client_secret: str, success: bool) -> None:
    """What Stripe's script does in the browser when the bank's 3-D Secure check ends."""
    intent_id = client_secret.split("_secret_")[0]
    request = urllib.request.Request(
        f"{localstripe}/v1/payment_intents/{intent_id}/_authenticate?success={str(success).lower()}",
        data=json.dumps({"key": "pk_test_localstripe", "client_secret": client_secret}).encode(),
        method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


@pytest.mark.parametrize("bank_says_yes", [True, False])
def test_a_card_that_needs_the_banks_check(
    stripe_app: Flask, customer: FlaskClient, order_number: str, localstripe: str, bank_says_yes: bool
) -> None:
    response = pay(customer, order_number, three_d_secure_card(localstripe))

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Your bank wants to confirm this payment" in html
    with stripe_app.app_context():
        order = the_order(order_number)
        assert order.status == AWAITING_PAYMENT
        secret = gateway_for_app(stripe_app).retrieve(order.payment_intent_id).client_secret
    assert f'data-client-secret="{secret}"' in html

    bank_check(localstripe, secret, bank_says_yes)
    checked = customer.post(f"/orders/{order_number}/pay/check",
                            data={"csrf_token": csrf_token(customer, f"/orders/{order_number}")})

    with stripe_app.app_context():
        status = the_order(order_number).status
    if bank_says_yes:
        assert checked.status_code == 302 and status == PAID
    else:
        assert checked.status_code == 422 and status == AWAITING_PAYMENT
        assert "Your bank did not confirm the payment" in checked.get_data(as_text=True)


def test_a_paid_or_cancelled_order_has_no_payment_page(
    stripe_app: Flask, customer: FlaskClient, order_number: str
) -> None:
    with stripe_app.app_context():
        orders.cancel(the_order(order_number), None, "changed my mind")

    response = customer.get(f"/orders/{order_number}/pay")

    assert response.status_code == 302 and response.headers["Location"] == f"/orders/{order_number}"
    assert pay(customer, order_number, "pm_card_visa").status_code == 302
    with stripe_app.app_context():
        assert the_order(order_number).payment_intent_id is None


def test_stripe_unreachable_says_so_and_keeps_the_order(
    stripe_app: Flask, customer: FlaskClient, order_number: str
) -> None:
    from tests.stripe_server import free_port

    stripe_app.config["STRIPE_API_BASE"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    stripe_app.extensions.pop("payment_gateway", None)

    assert customer.get(f"/orders/{order_number}/pay").status_code == 200  # showing it asks nobody

    response = pay(customer, order_number, "pm_card_visa")
    assert response.status_code == 422
    assert "We could not reach our card processor. Nothing was charged" in response.get_data(as_text=True)
    with stripe_app.app_context():
        order = the_order(order_number)
        assert (order.status, order.payment_intent_id) == (AWAITING_PAYMENT, None)


def test_the_customer_cancels_a_paid_order_before_release(
    stripe_app: Flask, customer: FlaskClient, order_number: str, signed_in: Callable[[str], FlaskClient]
) -> None:
    assert pay(customer, order_number, "pm_card_visa").status_code == 302
    page = customer.get(f"/orders/{order_number}").get_data(as_text=True)
    assert "Cancel this order" in page
    # Nobody else can cancel it.
    other = signed_in("other_customer")
    assert other.post(f"/orders/{order_number}/cancel",
                      data={"csrf_token": csrf_token(other, "/orders")}).status_code == 404

    response = customer.post(f"/orders/{order_number}/cancel",
                             data={"csrf_token": csrf_token(customer, f"/orders/{order_number}")})

    assert response.status_code == 302
    page = customer.get(f"/orders/{order_number}").get_data(as_text=True)
    assert f"Order {order_number} is cancelled. Nothing has been charged." in page
    assert "Cancel this order" not in page
    with stripe_app.app_context():
        order = the_order(order_number)
        assert order.status == "cancelled"
        assert gateway_for_app(stripe_app).retrieve(order.payment_intent_id).status == "canceled"
        assert order.lines[0].reservations[0].state == "released"  # prescription units are back
        assert db.session.get(Strength, order.lines[0].strength_id).stock_allocated == 0


def test_a_released_order_cannot_be_cancelled_by_the_customer(
    stripe_app: Flask, customer: FlaskClient, order_number: str, users: dict[str, int]
) -> None:
    from shop.orders import staff

    assert pay(customer, order_number, "pm_card_visa").status_code == 302
    with stripe_app.app_context():
        staff.release(the_order(order_number), db.session.get(User, users["pharmacist"]),
                      gateway_for_app(stripe_app))
    assert "Cancel this order" not in customer.get(f"/orders/{order_number}").get_data(as_text=True)

    response = customer.post(f"/orders/{order_number}/cancel",
                             data={"csrf_token": csrf_token(customer, f"/orders/{order_number}")})

    assert response.status_code == 302
    page = customer.get(f"/orders/{order_number}").get_data(as_text=True)
    assert "already with our pharmacist and can no longer be cancelled" in page
    with stripe_app.app_context():
        assert the_order(order_number).status == "released"
