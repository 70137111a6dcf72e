"""The cart, the prescription gate and placing orders (stock and prescription quantity)."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, User
from shop.cart import services as cart
from shop.catalog.models import Package, Product, Strength
from shop.extensions import db
from shop.orders import services as orders
from shop.orders.models import Order
from shop.prescriptions.models import Prescription
from tests.conftest import csrf_token


def package(units: int, strength_slug: str = "50-mg") -> Package:
    return db.session.scalars(sa.select(Package).join(Strength).where(
        Strength.slug == strength_slug, Package.units == units)).one()


def prescription(customer_id: int, *, status: str = "approved", strength_slug: str = "50-mg",
                 quantity: int = 90, refills: int = 0, expires_in_days: int = 300) -> int:
    strength = db.session.scalars(sa.select(Strength).where(Strength.slug == strength_slug)).one()
    p = Prescription(customer_id=customer_id, status=status, product_id=strength.product_id,
                     requested_product_id=strength.product_id,
                     strength_id=strength.id if status == "approved" else None,
                     quantity_authorised=quantity if status == "approved" else None, refills=refills,
                     expires_on=dt.date.today() + dt.timedelta(days=expires_in_days),
                     rejection_reason="illegible" if status == "rejected" else None)
    db.session.add(p)
    db.session.commit()
    return p.id


def address_for(user_id: int) -> int:
    a = Address(user_id=user_id, recipient="R", line1="1 Main St", city="Portland", state="OR",
                postal_code="97204", is_default=True)
    db.session.add(a)
    db.session.commit()
    return a.id


def coverage_of(user_id: int | None, *lines: tuple[int, str, int]) -> list[str]:
    user = db.session.get(User, user_id) if user_id else None
    pairs = [(package(units, slug), qty) for units, slug, qty in lines]
    from shop.cart.gate import evaluate

    result = evaluate(user, pairs)
    return [result[p.strength_id].reason for p, _ in pairs]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({}, "no_prescription"),
        ({"status": "uploaded"}, "pending"),
        ({"status": "rejected"}, "rejected"),
        ({"expires_in_days": -1}, "expired"),
        ({"quantity": 60}, "insufficient"),
        ({"quantity": 90}, "covered"),
        ({"quantity": 30, "refills": 2}, "covered"),  # 30 x (1 + 2) = 90 units
        ({"strength_slug": "4-5-mg"}, "no_prescription"),  # approved, but another strength
    ],
)
def test_gate_for_the_90_pack(app_ctx: Flask, users: dict[str, int], setup: dict, expected: str) -> None:
    if setup:
        prescription(users["customer"], **setup)
    assert coverage_of(users["customer"], (90, "50-mg", 1)) == [expected]


def test_another_customers_prescription_does_not_count(app_ctx: Flask, users: dict[str, int]) -> None:
    prescription(users["other_customer"])
    assert coverage_of(users["customer"], (90, "50-mg", 1)) == ["no_prescription"]


def test_over_the_counter_and_mixed_carts(app_ctx: Flask, users: dict[str, int]) -> None:
    assert coverage_of(users["customer"], (100, "100-mg", 2)) == ["otc"]
    assert coverage_of(users["customer"], (100, "100-mg", 1), (30, "50-mg", 1)) == ["otc", "no_prescription"]
    prescription(users["customer"], quantity=90)
    # Two lines of one strength add up: 30 + 60 = 90 units is covered, 90 + 30 is not.
    assert coverage_of(users["customer"], (30, "50-mg", 1), (60, "50-mg", 1)) == ["covered", "covered"]
    assert coverage_of(users["customer"], (90, "50-mg", 1), (30, "50-mg", 1)) == ["insufficient"] * 2


def test_visitors_are_asked_to_sign_in_for_prescription_items(app_ctx: Flask) -> None:
    assert coverage_of(None, (90, "50-mg", 1)) == ["sign_in"]


def test_controlled_or_inactive_items_cannot_be_bought(app_ctx: Flask, users: dict[str, int]) -> None:
    db.session.execute(sa.update(Product).where(Product.slug == "disulfiram").values(controlled_substance=True))
    db.session.commit()
    assert coverage_of(users["customer"], (30, "250-mg", 1)) == ["controlled"]
    with pytest.raises(cart.CartError):
        cart.add(db.session.get(User, users["customer"]), package(30, "250-mg").id)


def test_a_package_retired_after_it_went_into_the_cart_cannot_be_bought(
    app_ctx: Flask, users: dict[str, int]
) -> None:
    customer = db.session.get(User, users["customer"])
    retired, kept = package(100, "100-mg"), package(250, "100-mg")
    cart.add(customer, retired.id)
    cart.add(customer, kept.id)
    retired.active = False
    db.session.commit()

    reasons = {line.package.units: line.coverage.reason for line in cart.view(customer).lines}
    assert reasons == {100: "unavailable", 250: "otc"}  # only the retired size's line is refused
    with pytest.raises(orders.CheckoutError, match="no longer sold"):
        orders.place_order(customer, address_for(users["customer"]), "retired-pack")


def test_cart_page_explains_each_line_and_keeps_checkout_closed(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    client = signed_in("customer")
    with app.app_context():
        ids = [package(90).id, package(100, "100-mg").id]
    token = csrf_token(client, "/cart")
    for pid in ids:
        assert client.post("/cart/add", data={"package_id": pid, "csrf_token": token,
                                              "price_cents": "1"}).status_code == 302
    page = client.get("/cart").get_data(as_text=True)
    assert "Prescription required: upload your prescription" in page
    assert "No prescription needed." in page
    assert "Upload a prescription for this item" in page
    assert 'disabled aria-describedby="checkout-note"' in page
    assert "$604.67" in page  # 595.68 + 8.99 from the database; the posted price is ignored
    response = client.get("/checkout")
    assert response.status_code == 302 and response.headers["Location"].endswith("/cart")


def packs_left(units_left: int, strength_slug: str) -> None:
    """Leave exactly `units_left` units of the strength sellable (the rest promised to other orders)."""
    strength = db.session.scalars(sa.select(Strength).where(Strength.slug == strength_slug)).one()
    strength.stock_allocated = strength.stock_on_hand - units_left
    db.session.commit()


def flashes(client: FlaskClient) -> str:
    html = client.get("/cart").get_data(as_text=True)
    return " ".join(re.findall(r'<p class="flash flash-\w+">([^<]*)</p>', html)).replace("&#39;", "'")


def cart_lines(user_id: int) -> list[tuple[int, int]]:
    view = cart.view(db.session.get(User, user_id))
    return [(line.package.units, line.quantity) for line in view.lines]


@pytest.mark.parametrize(("units", "slug", "quantity", "said"), [
    (90, "50-mg", "1", "Added 1 pack of 90 tablets of Naltrexone 50 mg to your cart."),
    (100, "100-mg", "2", "Added 2 packs of 100 tablets of Thiamine (vitamin B1) 100 mg to your cart."),
    (30, "4-5-mg", "1", "Added 1 pack of 30 capsules of Naltrexone 4.5 mg to your cart."),
])
def test_adding_says_how_many_packs_of_how_many_pills(
    app: Flask, signed_in: Callable[[str], FlaskClient], units: int, slug: str, quantity: str, said: str
) -> None:
    client = signed_in("customer")
    with app.app_context():
        pid = package(units, slug).id
    client.post("/cart/add", data={"package_id": pid, "quantity": quantity, "csrf_token": csrf_token(client, "/cart")})
    assert flashes(client) == said


@pytest.mark.parametrize("who", ["customer", "visitor"])
def test_adding_a_sold_out_package_says_so_and_changes_nothing(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int], who: str
) -> None:
    client = signed_in("customer") if who == "customer" else app.test_client()
    with app.app_context():
        pid = package(250, "100-mg").id
        packs_left(100, "100-mg")  # not one pack of 250 left; one of 100 is
    response = client.post("/cart/add", data={"package_id": pid, "csrf_token": csrf_token(client, "/products/thiamine")})
    assert response.status_code == 302
    said = flashes(client)
    assert said.startswith("Thiamine (vitamin B1) 100 mg in packs of 250 tablets is sold out. Your cart is unchanged. "
                           "Packs of 100 tablets are still in stock. We do not know yet when more will arrive: "
                           "please check back, or call us on "), said
    assert "only 0" not in said.lower() and "smaller quantity" not in said
    assert "Your cart is empty." in client.get("/cart").get_data(as_text=True)


def test_asking_for_more_packs_than_are_left_says_how_many_are(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    token = csrf_token(client, "/cart")
    with app.app_context():
        pid = package(100, "100-mg").id
        packs_left(250, "100-mg")  # two packs of 100
    client.post("/cart/add", data={"package_id": pid, "quantity": "3", "csrf_token": token})
    assert flashes(client) == "Only 2 packs of 100 tablets of Thiamine (vitamin B1) 100 mg are left. Your cart is unchanged."
    client.post("/cart/add", data={"package_id": pid, "quantity": "2", "csrf_token": token})
    client.post("/cart/add", data={"package_id": pid, "csrf_token": token})
    assert flashes(client).endswith("Only 2 packs of 100 tablets of Thiamine (vitamin B1) 100 mg are left. "
                                    "Your cart is unchanged: it has 2 packs of this already.")
    with app.app_context():
        packs_left(100, "100-mg")
    client.post("/cart/update", data={"package_id": pid, "quantity": "3", "csrf_token": token})
    assert flashes(client) == ("Only 1 pack of 100 tablets of Thiamine (vitamin B1) 100 mg is left. "
                               "Your cart is unchanged: it has 2 packs of this already.")
    with app.app_context():
        assert cart_lines(users["customer"]) == [(100, 2)]
    # Fewer packs are always allowed, even while the line is still short.
    client.post("/cart/update", data={"package_id": pid, "quantity": "1", "csrf_token": token})
    with app.app_context():
        assert cart_lines(users["customer"]) == [(100, 1)]


def test_a_line_that_sold_out_in_the_cart_says_so_and_checkout_refuses_it(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        cart.add(customer, package(100, "100-mg").id, 2)
        address = address_for(users["customer"])
        packs_left(0, "100-mg")
    page = client.get("/cart").get_data(as_text=True)
    assert "Thiamine (vitamin B1) 100 mg in packs of 100 tablets is sold out. Remove it to check out." in page
    assert "Only 0" not in page
    with app.app_context(), pytest.raises(orders.CheckoutError) as refused:
        orders.place_order(db.session.get(User, users["customer"]), address, "sold-out")
    assert str(refused.value).startswith("Thiamine (vitamin B1) 100 mg in packs of 100 tablets is sold out. Your cart is unchanged.")
    with app.app_context():
        assert cart_lines(users["customer"]) == [(100, 2)]
        packs_left(100, "100-mg")
    assert "Only 1 pack of 100 tablets of Thiamine (vitamin B1) 100 mg is left. Choose 1 pack or fewer to check out." in \
        client.get("/cart").get_data(as_text=True)


def test_a_customer_whose_packs_sold_out_on_the_checkout_page_is_told_plainly(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    with app.app_context():
        cart.add(db.session.get(User, users["customer"]), package(100, "100-mg").id)
        address = address_for(users["customer"])
    page = client.get("/checkout").get_data(as_text=True)
    token = re.search(r'name="checkout_token" value="([^"]+)"', page).group(1)
    with app.app_context():
        packs_left(0, "100-mg")  # someone else bought the last packs meanwhile
    response = client.post("/checkout", data={"csrf_token": csrf_token(client, "/cart"), "checkout_token": token,
                                              "address_id": str(address)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/cart")
    said = flashes(client)
    assert said.startswith("Thiamine (vitamin B1) 100 mg in packs of 100 tablets is sold out. Your cart is unchanged."), said
    with app.app_context():
        assert cart_lines(users["customer"]) == [(100, 1)]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_the_cart_page_runs_as_many_statements_for_one_sold_out_line_as_for_five(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int], count_statements: Callable
) -> None:
    from shop.cart.models import CartLine
    from shop.inventory.services import add_lot

    client = signed_in("customer")
    with app.app_context():
        thiamine = db.session.scalars(sa.select(Product).where(Product.slug == "thiamine")).one()
        for n in range(5):  # strengths with 50 tablets left: the 100 pack is sold out, the 30 pack is not
            strength = Strength(slug=f"sold-{n}", label=f"{n + 1} mg", amount=n + 1, unit="mg",
                                dosage_form="tablet", position=20 + n, stock_on_hand=0)
            strength.packages = [Package(units=30, price_cents=300), Package(units=100, price_cents=900)]
            thiamine.strengths.append(strength)
            db.session.flush()
            add_lot(strength, lot_number=f"L{n}", expiry_date=dt.date.today() + dt.timedelta(days=400),
                    units=50)
        db.session.commit()
        hundreds = db.session.scalars(sa.select(Package.id).join(Strength).where(
            Strength.slug.like("sold-%"), Package.units == 100).order_by(Strength.position)).all()

    def statements(lines: int) -> int:
        with app.app_context():
            db.session.execute(sa.delete(CartLine).where(CartLine.user_id == users["customer"]))
            db.session.add_all(CartLine(user_id=users["customer"], package_id=pid, quantity=1,
                                        price_cents_when_added=900) for pid in hundreds[:lines])
            db.session.commit()
        client.get("/cart")  # warm up
        with count_statements() as counter:
            page = client.get("/cart").get_data(as_text=True)
        assert page.count("in packs of 100 tablets is sold out. Remove it to check out. "
                          "Packs of 30 tablets are still in stock.") == lines
        return counter.count

    assert statements(5) == statements(1)


def test_visitor_cart_merges_at_sign_in(app: Flask, users: dict[str, int]) -> None:
    from tests.conftest import sign_in

    client = app.test_client()
    with app.app_context():
        pid = package(100, "100-mg").id
    client.post("/cart/add", data={"package_id": pid, "quantity": "2", "csrf_token": csrf_token(client, "/products/thiamine")})
    assert "$17.98" in client.get("/cart").get_data(as_text=True)
    sign_in(client, app, "customer@example.com")
    page = client.get("/cart").get_data(as_text=True)
    assert "$17.98" in page
    with app.app_context():
        view = cart.view(db.session.get(User, users["customer"]))
        assert [(line.package.id, line.quantity) for line in view.lines] == [(pid, 2)]


def test_placing_an_order_allocates_reserves_and_is_idempotent(app_ctx: Flask, users: dict[str, int]) -> None:
    customer = db.session.get(User, users["customer"])
    rx = prescription(users["customer"], quantity=30, refills=2)
    address = address_for(users["customer"])
    cart.add(customer, package(90).id)
    order = orders.place_order(customer, address, "token-1")
    again = orders.place_order(customer, address, "token-1")
    assert again.id == order.id
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 1
    order = db.session.get(Order, order.id)
    assert order.total_cents == 59568 and order.shipping_cents == 0
    assert [(line.product_name, line.strength_label, line.units, line.unit_price_cents) for line in order.lines] == [
        ("Naltrexone", "50 mg", 90, 59568)]
    strength = db.session.get(Strength, order.lines[0].strength_id)
    assert strength.stock_allocated == 90
    assert db.session.get(Prescription, rx).quantity_reserved == 90
    assert cart.view(customer).lines == []
    # A later price change does not touch the order's snapshot.
    db.session.execute(sa.update(Package).where(Package.id == order.lines[0].package_id).values(price_cents=1))
    db.session.commit()
    assert db.session.get(Order, order.id).lines[0].unit_price_cents == 59568


def test_the_prescription_cannot_be_used_twice(app_ctx: Flask, users: dict[str, int]) -> None:
    customer = db.session.get(User, users["customer"])
    prescription(users["customer"], quantity=90)
    address = address_for(users["customer"])
    cart.add(customer, package(90).id)
    orders.place_order(customer, address, "first")
    cart.add(customer, package(30).id)
    assert coverage_of(users["customer"], (30, "50-mg", 1)) == ["insufficient"]
    with pytest.raises(orders.CheckoutError):
        orders.place_order(customer, address, "second")


def test_cancelling_returns_stock_and_prescription_quantity(app_ctx: Flask, users: dict[str, int]) -> None:
    customer = db.session.get(User, users["customer"])
    rx = prescription(users["customer"], quantity=90)
    cart.add(customer, package(90).id)
    order = orders.place_order(customer, address_for(users["customer"]), "t")
    orders.cancel(order, None, "not paid in time")
    order = db.session.get(Order, order.id)
    assert order.status == "cancelled"
    assert db.session.get(Strength, order.lines[0].strength_id).stock_allocated == 0
    assert db.session.get(Prescription, rx).quantity_reserved == 0
    with pytest.raises(orders.IllegalTransition):
        orders.ship(order, customer, "UPS", "1Z")


def test_thirty_buyers_for_the_last_five_packs(app: Flask, make_user: Callable[..., int]) -> None:
    buyers = [make_user(f"buyer{n}@example.com") for n in range(30)]
    with app.app_context():
        pid = package(100, "100-mg").id
        strength_id = db.session.get(Package, pid).strength_id
        strength = db.session.get(Strength, strength_id)
        strength.stock_allocated = strength.stock_on_hand - 500  # 5 packs of 100 left
        db.session.commit()
        addresses = {b: address_for(b) for b in buyers}
        for b in buyers:
            cart.add(db.session.get(User, b), pid)
    results: list[str] = []
    barrier = threading.Barrier(len(buyers), timeout=30)

    def buy(user_id: int) -> None:
        # Wait before touching the database: 30 threads holding connections at a barrier would
        # exhaust the connection pool (15) and never meet.
        barrier.wait()
        with app.app_context():
            user = db.session.get(User, user_id)
            try:
                orders.place_order(user, addresses[user_id], f"token-{user_id}")
                results.append("ok")
            except orders.CheckoutError as error:
                results.append(str(error))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=buy, args=(b,)) for b in buyers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results.count("ok") == 5, results
    assert len(results) == 30
    assert all("Thiamine" in r for r in results if r != "ok")
    # Losers are told plainly: sold out, cart unchanged (not "only 0 pack(s)" or "a smaller quantity").
    assert all("Thiamine (vitamin B1) 100 mg in packs of 100 tablets is sold out. Your cart is unchanged." in r
               and "smaller quantity" not in r for r in results if r != "ok"), results
    with app.app_context():
        strength = db.session.get(Strength, strength_id)
        assert strength.stock_on_hand - strength.stock_allocated == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 5


def test_unpaid_orders_are_released_after_their_time(app: Flask, users: dict[str, int]) -> None:
    import time_machine

    with app.app_context():
        customer = db.session.get(User, users["customer"])
        rx = prescription(users["customer"], quantity=90)
        cart.add(customer, package(90).id)
        order = orders.place_order(customer, address_for(users["customer"]), "late")
        order_id = order.id
    runner = app.test_cli_runner()
    assert "Released 0" in runner.invoke(args=["shop", "release-expired"]).output
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)):
        assert "Released 1" in runner.invoke(args=["shop", "release-expired"]).output
    with app.app_context():
        order = db.session.get(Order, order_id)
        assert order.status == "cancelled"
        assert db.session.get(Prescription, rx).quantity_reserved == 0
        assert db.session.get(Strength, order.lines[0].strength_id).stock_allocated == 0
