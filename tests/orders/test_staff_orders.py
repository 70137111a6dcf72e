"""The staff side of the order pipeline against the real localstripe: release (capture and dispense),
ship, deliver, cancel (the authorisation), refund, and expiring unpaid orders."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import User
from shop.cart import services as cart
from shop.catalog.models import Strength
from shop.extensions import db
from shop.inventory import services as inventory
from shop.inventory.models import StockLot
from shop.notifications.models import OutboxMessage
from shop.orders import services as orders
from shop.orders import staff
from shop.orders.models import Order, OrderEvent, PaymentEntry
from shop.payments.gateway import PaymentGateway, gateway_for_app
from shop.prescriptions.models import Prescription
from tests.conftest import csrf_token
from tests.orders.test_checkout import address_for, package, prescription
from tests.stripe_server import SECRET_KEY, free_port

TOTAL = 59568  # one 90 pack of naltrexone 50 mg, shipping free


@dataclass(frozen=True)
class Placed:
    number: str
    id: int
    intent_id: str | None
    rx: int
    strength_id: int


@pytest.fixture
def gateway(stripe_app: Flask) -> PaymentGateway:
    return gateway_for_app(stripe_app)


def place(app: Flask, users: dict[str, int], gateway: PaymentGateway, token: str, *,
          authorise: bool = True, confirm: bool = True, record: bool = True) -> Placed:
    """An order of the customer for one 90 pack of naltrexone 50 mg under a fresh prescription; by
    default paid: authorised at localstripe with a test card and recorded as the webhook would."""
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        rx = prescription(users["customer"], quantity=90)
        cart.add(customer, package(90).id)
        order = orders.place_order(customer, address_for(users["customer"]), token)
        intent_id = None
        if authorise:
            intent = gateway.create_authorisation(order_id=order.id, order_number=order.number,
                                                  amount_cents=order.total_cents, currency=order.currency)
            orders.attach_intent(order, intent.id)
            intent_id = intent.id
            if confirm:
                gateway.confirm(intent.id, "pm_card_visa")
                if record:
                    assert orders.record_authorisation(order.id, intent.id, intent.amount, intent.currency)
        return Placed(order.number, order.id, intent_id, rx, order.lines[0].strength_id)


def paid(app: Flask, users: dict[str, int], gateway: PaymentGateway, token: str = "staff-1") -> Placed:
    return place(app, users, gateway, token)


def fetch(number: str) -> Order:
    db.session.expire_all()
    return db.session.scalars(sa.select(Order).where(Order.number == number)).one()


def user(users: dict[str, int], role: str) -> User:
    return db.session.get(User, users[role])


def post(client: FlaskClient, number: str, action: str, **data: str):
    token = csrf_token(client, f"/staff/orders/{number}")
    return client.post(f"/staff/orders/{number}/{action}", data={"csrf_token": token, **data})


def outbox_kinds(customer_id: int) -> list[str]:
    return list(db.session.scalars(sa.select(OutboxMessage.kind).where(OutboxMessage.user_id == customer_id)
                                   .order_by(OutboxMessage.id)))


def ledger(order_id: int) -> list[tuple[str, int]]:
    return [(e.kind, e.amount_cents) for e in db.session.scalars(
        sa.select(PaymentEntry).where(PaymentEntry.order_id == order_id).order_by(PaymentEntry.id))]


def released(app: Flask, users: dict[str, int], gateway: PaymentGateway, token: str = "staff-1") -> Placed:
    placed = paid(app, users, gateway, token)
    with app.app_context():
        staff.release(fetch(placed.number), user(users, "pharmacist"), gateway)
    return placed


# Release ----------------------------------------------------------------------------------------


def test_release_captures_at_stripe_and_dispenses_from_the_earliest_expiring_lot(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = paid(stripe_app, users, gateway)
    with stripe_app.app_context():
        strength = db.session.get(Strength, placed.strength_id)
        # A lot that expires sooner than the demo lot (two years): it must go first.
        early = inventory.add_lot(strength, lot_number="EARLY-1",
                                  expiry_date=dt.date.today() + dt.timedelta(days=40), units=60)
        db.session.commit()
        early_id = early.id
        demo_lot = db.session.scalars(sa.select(StockLot).where(
            StockLot.strength_id == strength.id, StockLot.id != early_id)).one()
        demo_id, demo_before = demo_lot.id, demo_lot.units_remaining
        on_hand, allocated = strength.stock_on_hand, strength.stock_allocated
        assert gateway.retrieve(placed.intent_id).status == "requires_capture"
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 90

    pharmacist = signed_in("pharmacist")
    assert "Release for dispensing and charge the card" in pharmacist.get(
        f"/staff/orders/{placed.number}").get_data(as_text=True)
    response = post(pharmacist, placed.number, "release")

    assert response.status_code == 302
    assert "the payment is captured" in pharmacist.get(response.headers["Location"]).get_data(as_text=True)
    with stripe_app.app_context():
        intent = gateway.retrieve(placed.intent_id)
        assert (intent.status, intent.amount_received) == ("succeeded", TOTAL)
        order = fetch(placed.number)
        assert order.status == "released"
        rx = db.session.get(Prescription, placed.rx)
        assert (rx.quantity_reserved, rx.quantity_dispensed) == (0, 90)
        strength = db.session.get(Strength, placed.strength_id)
        assert (strength.stock_on_hand, strength.stock_allocated) == (on_hand - 90, allocated - 90)
        assert db.session.get(StockLot, early_id).units_remaining == 0  # all 60 from the early lot
        assert db.session.get(StockLot, demo_id).units_remaining == demo_before - 30
        assert ledger(order.id) == [("authorised", TOTAL), ("captured", TOTAL)]
        assert orders.payment_state(order) == "captured"
        event = order.events[-1]
        assert (event.from_status, event.to_status, event.actor_id) == ("paid", "released", users["pharmacist"])
        assert "EARLY-1 (60)" in event.note
        assert outbox_kinds(users["customer"]) == ["order_paid", "order_released"]


def test_release_twice_is_refused_and_captures_once(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = released(stripe_app, users, gateway)
    pharmacist = signed_in("pharmacist")

    response = post(pharmacist, placed.number, "release")

    assert response.status_code == 302
    page = pharmacist.get(response.headers["Location"]).get_data(as_text=True)
    assert "is released by our pharmacist, so it cannot be released" in page
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert order.status == "released"
        assert ledger(order.id) == [("authorised", TOTAL), ("captured", TOTAL)]
        assert db.session.get(Prescription, placed.rx).quantity_dispensed == 90
        assert outbox_kinds(users["customer"]).count("order_released") == 1


def test_a_release_retried_after_the_capture_does_not_capture_again(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    # As if a first release captured at Stripe and then the database write failed.
    placed = paid(stripe_app, users, gateway)
    with stripe_app.app_context():
        gateway.capture(placed.intent_id, order_id=placed.id)

        staff.release(fetch(placed.number), user(users, "pharmacist"), gateway)

        order = fetch(placed.number)
        assert order.status == "released"
        assert ledger(order.id) == [("authorised", TOTAL), ("captured", TOTAL)]
        assert gateway.retrieve(placed.intent_id).amount_received == TOTAL


def test_two_pharmacists_releasing_at_once_dispense_once(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, make_user: Callable[..., int]
) -> None:
    placed = paid(stripe_app, users, gateway)
    pharmacists = [users["pharmacist"], make_user("second.pharmacist@example.com", role="pharmacist")]
    with stripe_app.app_context():
        on_hand = db.session.get(Strength, placed.strength_id).stock_on_hand
    results: list[str] = []
    barrier = threading.Barrier(2, timeout=30)

    def release(pharmacist_id: int) -> None:
        barrier.wait()
        with stripe_app.app_context():
            try:
                staff.release(fetch(placed.number), db.session.get(User, pharmacist_id), gateway)
                results.append("released")
            except staff.ActionRefused as error:
                results.append(error.message)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=release, args=(p,)) for p in pharmacists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert len(results) == 2 and results.count("released") == 1, results
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert order.status == "released"
        assert ledger(order.id) == [("authorised", TOTAL), ("captured", TOTAL)]
        assert db.session.get(Prescription, placed.rx).quantity_dispensed == 90
        assert db.session.get(Strength, placed.strength_id).stock_on_hand == on_hand - 90
        assert [e.to_status for e in order.events].count("released") == 1


def test_without_unexpired_stock_the_card_is_not_charged(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = paid(stripe_app, users, gateway)
    with stripe_app.app_context():
        db.session.execute(sa.update(StockLot).where(StockLot.strength_id == placed.strength_id)
                           .values(expiry_date=dt.date.today() - dt.timedelta(days=1)))
        db.session.commit()

        with pytest.raises(staff.ActionRefused, match="Not enough stock to dispense"):
            staff.release(fetch(placed.number), user(users, "pharmacist"), gateway)

        assert gateway.retrieve(placed.intent_id).status == "requires_capture"
        assert fetch(placed.number).status == "paid"


def test_a_stripe_failure_changes_nothing(stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway) -> None:
    placed = paid(stripe_app, users, gateway)
    unreachable = PaymentGateway(SECRET_KEY, api_base=f"http://127.0.0.1:{free_port()}", max_network_retries=0)
    with stripe_app.app_context():
        with pytest.raises(staff.ActionRefused, match="Stripe could not look up the payment") as raised:
            staff.release(fetch(placed.number), user(users, "pharmacist"), unreachable)
        assert "Nothing was changed" in raised.value.message
        with pytest.raises(staff.ActionRefused, match="Stripe could not"):
            staff.cancel(fetch(placed.number), user(users, "admin"), "customer asked", unreachable)

        order = fetch(placed.number)
        assert order.status == "paid"
        assert ledger(order.id) == [("authorised", TOTAL)]
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 90
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 90
        assert gateway.retrieve(placed.intent_id).status == "requires_capture"


# Ship and deliver -------------------------------------------------------------------------------


def test_ship_needs_carrier_and_tracking_then_deliver(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = released(stripe_app, users, gateway)
    admin = signed_in("admin")

    refused = post(admin, placed.number, "ship", carrier="  ", tracking_number="")

    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "Enter the carrier." in page and "Enter the tracking number." in page
    assert 'class="error-summary"' in page
    with stripe_app.app_context():
        assert fetch(placed.number).status == "released"

    assert post(admin, placed.number, "ship", carrier="UPS", tracking_number="1Z999AA10123456784").status_code == 302
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert (order.status, order.carrier, order.tracking_number) == ("shipped", "UPS", "1Z999AA10123456784")
        message = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "order_shipped")).one()
        assert "1Z999AA10123456784" in message.body and message.to_address == "customer@example.com"

    pharmacist = signed_in("pharmacist")
    assert post(pharmacist, placed.number, "delivered").status_code == 302
    again = post(pharmacist, placed.number, "delivered")
    assert "cannot be marked delivered" in pharmacist.get(again.headers["Location"]).get_data(as_text=True)
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert order.status == "delivered"
        assert [e.to_status for e in order.events] == ["awaiting_payment", "paid", "released", "shipped",
                                                      "delivered"]
        assert order.events[-1].actor_id == users["pharmacist"]


def test_an_unreleased_order_cannot_ship(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = paid(stripe_app, users, gateway)
    admin = signed_in("admin")

    response = post(admin, placed.number, "ship", carrier="UPS", tracking_number="1Z")

    assert response.status_code == 302
    assert "cannot be shipped" in admin.get(response.headers["Location"]).get_data(as_text=True)
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert (order.status, order.carrier) == ("paid", None)
        with pytest.raises(orders.IllegalTransition):
            orders.ship(order, user(users, "admin"), "UPS", "1Z")
        assert fetch(placed.number).status == "paid"


# Cancel -----------------------------------------------------------------------------------------


def test_cancelling_a_paid_order_cancels_the_authorisation_and_returns_the_holds(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = paid(stripe_app, users, gateway)
    pharmacist = signed_in("pharmacist")

    no_reason = post(pharmacist, placed.number, "cancel", reason=" ")
    assert no_reason.status_code == 422
    assert "Give a reason for cancelling." in no_reason.get_data(as_text=True)
    with stripe_app.app_context():
        assert gateway.retrieve(placed.intent_id).status == "requires_capture"
        assert fetch(placed.number).status == "paid"

    response = post(pharmacist, placed.number, "cancel", reason="Duplicate order")

    assert response.status_code == 302
    with stripe_app.app_context():
        assert gateway.retrieve(placed.intent_id).status == "canceled"
        order = fetch(placed.number)
        assert order.status == "cancelled"
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 0
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 0
        assert ledger(order.id) == [("authorised", TOTAL), ("cancelled", TOTAL)]
        assert orders.payment_state(order) == "authorisation cancelled"
        assert order.events[-1].note == "Duplicate order"
        assert order.events[-1].actor_id == users["pharmacist"]
        message = db.session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "order_cancelled")).one()
        assert "Duplicate order" in message.body and "hold on your card is released" in message.body


def test_an_order_captured_at_stripe_cannot_be_cancelled(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = paid(stripe_app, users, gateway)
    with stripe_app.app_context():
        gateway.capture(placed.intent_id, order_id=placed.id)  # captured, the release not yet recorded

        with pytest.raises(staff.ActionRefused, match="already captured at Stripe"):
            staff.cancel(fetch(placed.number), user(users, "admin"), "customer asked", gateway)

        assert fetch(placed.number).status == "paid"
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 90


def test_a_released_order_cannot_be_cancelled(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = released(stripe_app, users, gateway)
    with stripe_app.app_context():
        with pytest.raises(staff.ActionRefused, match="Refund it instead"):
            staff.cancel(fetch(placed.number), user(users, "admin"), "customer asked", gateway)
        assert fetch(placed.number).status == "released"


# Refund -----------------------------------------------------------------------------------------


def test_two_partial_refunds_then_the_rest(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = released(stripe_app, users, gateway)
    admin = signed_in("admin")

    assert post(admin, placed.number, "refund", amount="100.00", reason="Damaged box").status_code == 302
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert (order.status, orders.payment_state(order)) == ("released", "partly refunded")
    assert post(admin, placed.number, "refund", amount="$50.5", reason="Late").status_code == 302
    customer_page = signed_in("customer").get(f"/orders/{placed.number}").get_data(as_text=True)
    assert "Charged $595.68; refunded $150.50 so far." in customer_page

    over = post(admin, placed.number, "refund", amount="445.19", reason="Too much")  # $445.18 is left
    assert over.status_code == 422
    assert "At most $445.18 can be refunded" in over.get_data(as_text=True)
    with stripe_app.app_context():
        assert [kind for kind, _ in ledger(placed.id)].count("refunded") == 2

    rest = post(admin, placed.number, "refund", amount="", reason="Order withdrawn")
    assert rest.status_code == 302
    assert "Refunded $445.18" in admin.get(rest.headers["Location"]).get_data(as_text=True)
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert order.status == "refunded"
        assert orders.payment_state(order) == "refunded"
        refunds = db.session.scalars(sa.select(PaymentEntry).where(
            PaymentEntry.order_id == order.id, PaymentEntry.kind == "refunded").order_by(PaymentEntry.id)).all()
        assert [r.amount_cents for r in refunds] == [10000, 5050, 44518]
        assert all(r.reference.startswith("re_") for r in refunds)
        assert len({r.reference for r in refunds}) == 3
        assert outbox_kinds(users["customer"]).count("order_refunded") == 3
        assert order.events[-1].actor_id == users["admin"]

    after = post(admin, placed.number, "refund", amount="1.00", reason="Again")
    assert after.status_code == 302
    assert "cannot be refunded" in admin.get(after.headers["Location"]).get_data(as_text=True)
    with stripe_app.app_context():
        assert len(ledger(placed.id)) == 5  # authorised, captured, three refunds


def test_a_refund_amount_must_be_money(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = released(stripe_app, users, gateway)
    admin = signed_in("admin")
    for amount, message in [("-5", "more than zero"), ("abc", "such as 12.50"), ("1.005", "two decimals")]:
        response = post(admin, placed.number, "refund", amount=amount, reason="x")
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    no_reason = post(admin, placed.number, "refund", amount="1.00", reason="")
    assert no_reason.status_code == 422 and "Give a reason for the refund." in no_reason.get_data(as_text=True)
    with stripe_app.app_context():
        assert ledger(placed.id) == [("authorised", TOTAL), ("captured", TOTAL)]


def test_only_an_admin_can_refund(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = released(stripe_app, users, gateway)
    for role in ("customer", "pharmacist"):
        client = signed_in(role)
        token = csrf_token(client, "/account")
        response = client.post(f"/staff/orders/{placed.number}/refund",
                               data={"csrf_token": token, "amount": "10.00", "reason": "x"})
        assert response.status_code == 403
    with stripe_app.app_context():
        assert ledger(placed.id) == [("authorised", TOTAL), ("captured", TOTAL)]
        assert fetch(placed.number).status == "released"


def test_an_unpaid_order_cannot_be_refunded(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = paid(stripe_app, users, gateway)
    with stripe_app.app_context():
        with pytest.raises(staff.ActionRefused, match="Only a captured payment can be refunded"):
            staff.refund(fetch(placed.number), user(users, "admin"), None, gateway, "x")
        assert ledger(placed.id) == [("authorised", TOTAL)]


# What the customer and staff see ----------------------------------------------------------------


def test_the_customer_timeline_shows_each_step(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = released(stripe_app, users, gateway)
    with stripe_app.app_context():
        admin = user(users, "admin")
        orders.ship(fetch(placed.number), admin, "USPS", "9400100000000000000000")
        orders.mark_delivered(fetch(placed.number), admin)
        staff.refund(fetch(placed.number), admin, None, gateway, "Customer returned it")
    cancelled = paid(stripe_app, users, gateway, token="staff-2")
    with stripe_app.app_context():
        staff.cancel(fetch(cancelled.number), user(users, "admin"), "Out of stock at the supplier", gateway)

    customer = signed_in("customer")
    page = customer.get(f"/orders/{placed.number}").get_data(as_text=True)
    timeline = page[page.index('<ol class="timeline">'):]
    steps = ["Order placed", "Payment authorised", "Released by our pharmacist; card charged",
             "Shipped (USPS 9400100000000000000000)", "Delivered",
             "Refunded ($595.68 to the card: Customer returned it)"]
    positions = [timeline.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), positions
    assert "Cancelled (Out of stock at the supplier)" in customer.get(
        f"/orders/{cancelled.number}").get_data(as_text=True)
    with stripe_app.app_context():
        assert outbox_kinds(users["customer"]) == [
            "order_paid", "order_released", "order_shipped", "order_refunded", "order_paid", "order_cancelled"]


def test_the_staff_list_shows_orders_by_stage(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    waiting = paid(stripe_app, users, gateway, token="staff-a")
    to_ship = released(stripe_app, users, gateway, token="staff-b")
    unpaid = place(stripe_app, users, gateway, "staff-c", authorise=False)

    page = signed_in("admin").get("/staff/orders").get_data(as_text=True)

    heading = {key: page.find(f'<h2 id="{key}">') for key in (
        "stage-paid", "stage-released", "stage-shipped", "recent-title")}
    assert "Waiting for release by a pharmacist</h2>" in page
    assert heading["stage-paid"] < page.find(waiting.number) < heading["stage-released"] < page.find(
        to_ship.number) < heading["stage-shipped"] < heading["recent-title"] < page.find(unpaid.number)
    row = re.search(rf"{waiting.number}</a></th>(.*?)</tr>", page, re.S).group(1)
    assert "Customer" in row and "$595.68" in row and "Authorised" in row
    assert "Captured" in re.search(rf"{to_ship.number}</a></th>(.*?)</tr>", page, re.S).group(1)
    assert "Not paid" in re.search(rf"{unpaid.number}</a></th>(.*?)</tr>", page, re.S).group(1)


def test_the_staff_list_marks_paid_orders_whose_card_hold_is_old(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    old = paid(stripe_app, users, gateway, token="staff-old-hold")
    fresh = paid(stripe_app, users, gateway, token="staff-fresh-hold")
    with stripe_app.app_context():
        for placed, age in ((old, dt.timedelta(days=6, hours=1)), (fresh, dt.timedelta(days=4, hours=23))):
            db.session.execute(sa.update(PaymentEntry).where(PaymentEntry.order_id == placed.id).values(
                created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - age))
        db.session.commit()

    page = signed_in("pharmacist").get("/staff/orders").get_data(as_text=True)

    old_row = re.search(rf"{old.number}</a></th>(.*?)</tr>", page, re.S).group(1)
    assert "Hold 6 days old</span> release soon: a card hold ends after about 7 days" in old_row
    assert "Hold" not in re.search(rf"{fresh.number}</a></th>(.*?)</tr>", page, re.S).group(1)


def test_releasing_an_order_whose_hold_ended_asks_the_customer_to_pay_again(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    # The hold lapsed at Stripe and its webhook has not arrived: the release finds out.
    placed = paid(stripe_app, users, gateway, token="staff-lapsed")
    gateway.cancel(placed.intent_id, order_id=placed.id)
    pharmacist = signed_in("pharmacist")

    response = post(pharmacist, placed.number, "release")

    assert response.status_code == 302
    page = pharmacist.get(response.headers["Location"]).get_data(as_text=True)
    assert "had ended at Stripe, so nothing was captured" in page
    with stripe_app.app_context():
        order = fetch(placed.number)
        assert (order.status, order.payment_intent_id) == ("awaiting_payment", None)
        assert ledger(placed.id) == [("authorised", TOTAL), ("cancelled", TOTAL)]
        assert "order_payment_needed" in outbox_kinds(users["customer"])
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 90  # still kept for the order


def test_the_detail_page_shows_prescriptions_timeline_and_ledger(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway, signed_in: Callable[[str], FlaskClient]
) -> None:
    placed = paid(stripe_app, users, gateway)
    with stripe_app.app_context():
        db.session.execute(sa.update(Prescription).where(Prescription.id == placed.rx)
                           .values(prescriber_name="Dr Ada Lovelace"))
        db.session.commit()

    page = signed_in("pharmacist").get(f"/staff/orders/{placed.number}").get_data(as_text=True)
    assert f'href="/pharmacy/prescriptions/{placed.rx}"' in page
    assert "90 units reserved; prescriber Dr Ada Lovelace" in page
    assert "Paid (card authorised)" in page and "by the system" in page
    assert placed.intent_id in page  # the ledger's Stripe reference
    assert "Cancel order" in page and "Mark shipped" not in page

    admin_page = signed_in("admin").get(f"/staff/orders/{placed.number}").get_data(as_text=True)
    assert f"Prescription #{placed.rx}" in admin_page
    assert f'href="/pharmacy/prescriptions/{placed.rx}"' not in admin_page  # that page is pharmacists' only
    assert "Release for dispensing" not in admin_page  # releasing is for pharmacists


# Unpaid orders ----------------------------------------------------------------------------------


def overdue(number: str) -> None:
    db.session.execute(sa.update(Order).where(Order.number == number)
                       .values(pay_by=dt.datetime(2000, 1, 1)))
    db.session.commit()


def test_an_expired_unpaid_order_has_its_intent_cancelled(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = place(stripe_app, users, gateway, "late-1", confirm=False)  # the card never came
    with stripe_app.app_context():
        overdue(placed.number)

        report = staff.expire_unpaid(gateway)

        assert (report.cancelled, report.paid, report.waiting) == (1, 0, [])
        assert gateway.retrieve(placed.intent_id).status == "canceled"
        order = fetch(placed.number)
        assert order.status == "cancelled" and order.events[-1].note == "not paid in time"
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 0
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 0


def test_an_order_paid_at_the_last_second_is_marked_paid(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    # Authorised at Stripe; the webhook has not arrived when the time to pay runs out.
    placed = place(stripe_app, users, gateway, "late-2", record=False)
    with stripe_app.app_context():
        overdue(placed.number)

        report = staff.expire_unpaid(gateway)

        assert (report.cancelled, report.paid) == (0, 1)
        assert gateway.retrieve(placed.intent_id).status == "requires_capture"
        order = fetch(placed.number)
        assert order.status == "paid"
        assert ledger(order.id) == [("authorised", TOTAL)]
        assert db.session.get(Prescription, placed.rx).quantity_reserved == 90


def test_the_release_expired_command_asks_stripe(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = place(stripe_app, users, gateway, "late-3", confirm=False)
    with stripe_app.app_context():
        overdue(placed.number)

    output = stripe_app.test_cli_runner().invoke(args=["shop", "release-expired"]).output

    assert "Released 1 unpaid order(s)." in output
    with stripe_app.app_context():
        assert gateway.retrieve(placed.intent_id).status == "canceled"
        assert fetch(placed.number).status == "cancelled"


def test_when_stripe_cannot_be_asked_the_expired_order_waits(
    stripe_app: Flask, users: dict[str, int], gateway: PaymentGateway
) -> None:
    placed = place(stripe_app, users, gateway, "late-4", confirm=False)
    unreachable = PaymentGateway(SECRET_KEY, api_base=f"http://127.0.0.1:{free_port()}", max_network_retries=0)
    with stripe_app.app_context():
        overdue(placed.number)

        report = staff.expire_unpaid(unreachable)

        assert (report.cancelled, report.waiting) == (0, [placed.number])
        assert fetch(placed.number).status == "awaiting_payment"
        assert db.session.get(Strength, placed.strength_id).stock_allocated == 90
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OrderEvent)
                                 .where(OrderEvent.order_id == placed.id)) == 1
