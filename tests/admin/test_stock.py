"""Admin stock: receipts, adjustments, the ledger, expiry, thresholds, CSV, and who may use them."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import User
from shop.admin import stock
from shop.audit import AuditEvent
from shop.cart import services as cart
from shop.catalog.models import Product, Strength
from shop.extensions import db
from shop.inventory import services as inventory
from shop.inventory.models import StockLot, StockMovement
from shop.orders import services as orders
from shop.orders.models import Order
from tests.admin.rows_stock import ROWS
from tests.conftest import csrf_token
from tests.orders.test_checkout import address_for, package, prescription

DEMO_LOT = "DEMO-NALTREXONE-50-MG"
IN_A_YEAR = (dt.date.today() + dt.timedelta(days=365)).isoformat()


def strength_of(product_slug: str = "naltrexone", slug: str = "50-mg") -> Strength:
    return db.session.scalars(sa.select(Strength).join(Product).where(
        Product.slug == product_slug, Strength.slug == slug)).one()


def lot_named(lot_number: str) -> StockLot:
    return db.session.scalars(sa.select(StockLot).where(StockLot.lot_number == lot_number)).one()


def counts() -> tuple[int, int, int]:
    """Lots, ledger lines and stock audit rows: what a refused change must leave alone."""
    def count(model: type, *where: sa.ColumnElement[bool]) -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))

    return (count(StockLot), count(StockMovement), count(AuditEvent, AuditEvent.action.like("stock.%")))


def on_hand_ledger_total(strength_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(StockMovement.units), 0)).where(
        StockMovement.strength_id == strength_id,
        StockMovement.kind.in_(("receipt", "dispense", "adjustment", "expiry"))))


def expire(lot_number: str, days_ago: int = 1) -> None:
    db.session.execute(sa.update(StockLot).where(StockLot.lot_number == lot_number)
                       .values(expiry_date=dt.date.today() - dt.timedelta(days=days_ago)))
    db.session.commit()


def admin_user(users: dict[str, int]) -> User:
    user = db.session.get(User, users["admin"])
    assert user is not None
    return user


@pytest.fixture
def admin(app: Flask, signed_in: Callable[[str], FlaskClient]) -> FlaskClient:
    return signed_in("admin")


@pytest.fixture
def nal50(app: Flask) -> int:
    with app.app_context():
        return strength_of().id


def post(client: FlaskClient, url: str, data: dict[str, object]) -> tuple[int, str]:
    token = csrf_token(client, "/admin/stock")
    response = client.post(url, data={**data, "csrf_token": token})
    return response.status_code, response.get_data(as_text=True)


def place_order_for(customer_id: int, units: int = 90, token: str = "t1") -> Order:
    customer = db.session.get(User, customer_id)
    prescription(customer_id, quantity=units)
    cart.add(customer, package(units).id)
    return orders.place_order(customer, address_for(customer_id), token)


def pay_and_dispense(order_id: int, pharmacist_id: int) -> None:
    """The card authorised, then the pharmacist releases the order: its units leave the shelf."""
    order = db.session.get(Order, order_id)
    orders.attach_intent(order, f"pi_{order_id}")
    assert orders.record_authorisation(order_id, f"pi_{order_id}", order.total_cents, order.currency)
    orders.release_for_dispensing(db.session.get(Order, order_id), db.session.get(User, pharmacist_id),
                                  order.total_cents)


# Receiving ----------------------------------------------------------------------------------------


def test_receiving_a_lot_adds_to_on_hand_with_a_ledger_line_and_an_audit_row(
    app: Flask, admin: FlaskClient, nal50: int, users: dict[str, int]
) -> None:
    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/receive", {
        "lot_number": "NX-2291", "expiry_date": IN_A_YEAR, "units": "500", "supplier_reference": "PO 77"})
    assert status == 302
    page = admin.get(f"/admin/stock/strengths/{nal50}").get_data(as_text=True)
    assert "Received 500 units as lot NX-2291." in page
    assert "NX-2291" in page and "PO 77" in page
    with app.app_context():
        strength = db.session.get(Strength, nal50)
        assert (strength.stock_on_hand, strength.stock_allocated) == (2900, 0)
        lot = lot_named("NX-2291")
        assert (lot.units_received, lot.units_remaining, lot.supplier_reference) == (500, 500, "PO 77")
        movement = db.session.scalars(sa.select(StockMovement).where(StockMovement.lot_id == lot.id)).one()
        assert (movement.kind, movement.units, movement.actor_id) == ("receipt", 500, users["admin"])
        event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "stock.received")).one()
        assert event.actor_id == users["admin"] and event.details_dict["lot"] == "NX-2291"


@pytest.mark.parametrize(("form", "message"), [
    ({"lot_number": ""}, "Enter the lot number."),
    ({"lot_number": DEMO_LOT.lower()}, "is already recorded for this strength"),
    ({"lot_number": "=cmd|calc"}, "starting with a letter or digit"),
    ({"expiry_date": dt.date.today().isoformat()}, "The expiry date must be in the future"),
    ({"expiry_date": "2001-02-30"}, "Not a valid date value."),
    ({"units": "0"}, "Enter between 1 and 1,000,000 units."),
    ({"units": "1000001"}, "Enter between 1 and 1,000,000 units."),
    ({"units": ""}, "Enter the number of units received."),
])
def test_a_bad_receipt_is_refused_beside_its_field_and_saves_nothing(
    app: Flask, admin: FlaskClient, nal50: int, form: dict[str, str], message: str
) -> None:
    with app.app_context():
        before = counts()
    data = {"lot_number": "NX-1", "expiry_date": IN_A_YEAR, "units": "10", **form}
    status, page = post(admin, f"/admin/stock/strengths/{nal50}/receive", data)
    assert status == 422
    assert message in page
    assert 'class="error-summary"' in page and 'aria-invalid="true"' in page
    with app.app_context():
        assert counts() == before
        assert db.session.get(Strength, nal50).stock_on_hand == 2400


# Adjusting and the ledger -------------------------------------------------------------------------


def test_adjustments_dispensing_and_expiry_keep_the_ledger_equal_to_on_hand(
    app: Flask, admin: FlaskClient, nal50: int, users: dict[str, int]
) -> None:
    post(admin, f"/admin/stock/strengths/{nal50}/receive",
         {"lot_number": "NX-3", "expiry_date": IN_A_YEAR, "units": "300"})
    with app.app_context():
        new_lot = lot_named("NX-3").id
    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/adjust",
                     {"lot_id": new_lot, "reason_code": "damaged", "change": "-30", "note": "Crushed box"})
    assert status == 302
    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/adjust",
                     {"lot_id": new_lot, "reason_code": "count_correction", "change": "10", "note": ""})
    assert status == 302
    with app.app_context():
        order = place_order_for(users["customer"], 90)
        number = order.number
        pay_and_dispense(order.id, users["pharmacist"])
        assert lot_named("NX-3").units_remaining == 280 - 90  # earliest expiry first
        expire(DEMO_LOT)
        assert inventory.write_off_expired() == 2400

        strength = db.session.get(Strength, nal50)
        # 2400 received + 300 received - 30 damaged + 10 found - 90 dispensed - 2400 expired.
        assert (strength.stock_on_hand, strength.stock_allocated) == (190, 0)
        assert on_hand_ledger_total(nal50) == 190
        assert sum(lot.units_remaining for lot in db.session.scalars(
            sa.select(StockLot).where(StockLot.strength_id == nal50))) == 190
        for other in db.session.scalars(sa.select(Strength)):
            assert on_hand_ledger_total(other.id) == other.stock_on_hand
        damaged = db.session.scalars(sa.select(StockMovement).where(StockMovement.reason_code == "damaged")).one()
        assert (damaged.units, damaged.reason, damaged.actor_id) == (-30, "Crushed box", users["admin"])
        assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "stock.adjusted")) == 2
    page = admin.get(f"/admin/stock/ledger?strength={nal50}").get_data(as_text=True)
    assert "Damaged: Crushed box" in page and "admin@example.com" in page and number in page
    assert "matches on hand" in admin.get(f"/admin/stock/strengths/{nal50}").get_data(as_text=True)


@pytest.mark.parametrize(("change", "reason", "message"), [
    ("-2401", "damaged", "holds 2,400 units; it cannot go below zero."),
    ("5", "count_correction", "was received with 2,400 units and cannot hold more"),
    ("5", "damaged", "Damaged units leave stock: enter a negative number."),
    ("0", "count_correction", "not zero"),
    ("-5", "", "Choose a reason."),
])
def test_an_impossible_adjustment_is_refused_and_changes_nothing(
    app: Flask, admin: FlaskClient, nal50: int, change: str, reason: str, message: str
) -> None:
    with app.app_context():
        lot_id = lot_named(DEMO_LOT).id
        before = counts()
    status, page = post(admin, f"/admin/stock/strengths/{nal50}/adjust",
                        {"lot_id": lot_id, "reason_code": reason, "change": change})
    assert status == 422
    assert message in page
    with app.app_context():
        assert counts() == before
        assert db.session.get(Strength, nal50).stock_on_hand == 2400
        assert lot_named(DEMO_LOT).units_remaining == 2400


@pytest.mark.parametrize("lot_id", ["abc", "99999999999999999999", "-3"])
def test_an_adjustment_naming_no_real_lot_is_refused(
    app: Flask, admin: FlaskClient, nal50: int, lot_id: str
) -> None:
    with app.app_context():
        before = counts()
    status, page = post(admin, f"/admin/stock/strengths/{nal50}/adjust",
                        {"lot_id": lot_id, "reason_code": "count_correction", "change": "-1"})
    assert status == 422
    assert "Choose a lot" in page
    with app.app_context():
        assert counts() == before


def test_on_hand_cannot_be_adjusted_below_what_orders_were_promised(
    app: Flask, admin: FlaskClient, nal50: int, users: dict[str, int]
) -> None:
    with app.app_context():
        place_order_for(users["customer"], 90)
        lot_id = lot_named(DEMO_LOT).id
        before = counts()
    status, page = post(admin, f"/admin/stock/strengths/{nal50}/adjust",
                        {"lot_id": lot_id, "reason_code": "count_correction", "change": "-2311"})
    assert status == 422
    assert "90 units are allocated to orders, so on hand (2,400) cannot fall to 89." in page
    with app.app_context():
        assert counts() == before
        strength = db.session.get(Strength, nal50)
        assert (strength.stock_on_hand, strength.stock_allocated) == (2400, 90)
    # Exactly down to the allocation is allowed.
    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/adjust",
                     {"lot_id": lot_id, "reason_code": "count_correction", "change": "-2310"})
    assert status == 302


def test_the_ledger_pages_newest_first(app: Flask, admin: FlaskClient, nal50: int,
                                       users: dict[str, int]) -> None:
    with app.app_context():
        lot_id = lot_named(DEMO_LOT).id
        for n in range(1, 46):
            stock.adjust(db.session.get(Strength, nal50), lot_id=lot_id, units=-1, reason_code="damaged",
                         note=f"broken {n}", actor=admin_user(users))
    first = admin.get(f"/admin/stock/ledger?strength={nal50}").get_data(as_text=True)
    assert first.count("Damaged: broken") == 45 and first.count("<time") == 46  # and its receipt
    everything = admin.get("/admin/stock/ledger").get_data(as_text=True)  # + 7 receipts of other strengths
    assert everything.count("<time") == 50
    older = re.search(r'href="(/admin/stock/ledger\?before=\d+[^"]*)"', everything)
    assert older, "no link to older movements"
    rest = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert rest.count("<time") == 3 and "Damaged: broken 45" not in rest and "Damaged: broken 1<" not in rest


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01", "from=9999-12-31&to=0001-01-01",
                                   "from=0001-01-01&to=9999-12-31", "to=99999-01-01"])
def test_a_ledger_date_at_the_end_of_the_calendar_is_a_filter_not_a_failure(
        admin: FlaskClient, nal50: int, query: str) -> None:
    page = admin.get(f"/admin/stock/ledger?strength={nal50}&{query}")
    assert page.status_code == 200
    empty = query == "from=9999-12-31&to=0001-01-01"
    assert page.get_data(as_text=True).count("<time") == (0 if empty else 1)  # the demo lot's receipt


def test_a_range_of_days_ends_before_the_day_after_its_last() -> None:
    from shop.dates import parse_date, range_end, range_start

    assert range_end(dt.date(2026, 3, 1)) == dt.datetime(2026, 3, 2)
    assert range_end(dt.date.max) is None and range_end(None) is None
    assert range_start(dt.date.min) == dt.datetime(1, 1, 1) and range_start(None) is None
    assert [parse_date(t) for t in ("2026-03-01", " 9999-12-31 ", "9999-12-32", "", "\x00", None)] == [
        dt.date(2026, 3, 1), dt.date.max, None, None, None, None]


# Expiry -----------------------------------------------------------------------------------------


def test_an_expired_lot_is_not_sold(app: Flask, client: FlaskClient, nal50: int, users: dict[str, int]) -> None:
    with app.app_context():
        prescription(users["customer"], quantity=90)
        cart.add(db.session.get(User, users["customer"]), package(90).id)  # while it was in stock
        expire(DEMO_LOT)  # the only stock of naltrexone 50 mg
    # Customers see it out of stock at once, before the worker writes the lot off.
    assert "Out of stock" in client.get("/products/naltrexone?strength=50-mg").get_data(as_text=True)
    with app.app_context():
        with pytest.raises(cart.CartError, match="Naltrexone 50 mg in packs of 60 tablets is sold out"):
            cart.add(db.session.get(User, users["customer"]), package(60).id)
        with pytest.raises(orders.CheckoutError, match="Naltrexone 50 mg"):
            orders.place_order(db.session.get(User, users["customer"]), address_for(users["customer"]), "t1")
        strength = db.session.get(Strength, nal50)
        assert strength.stock_allocated == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0

        assert inventory.write_off_expired() == 2400
        assert inventory.write_off_expired() == 0  # nothing left to do
        strength = db.session.get(Strength, nal50)
        assert (strength.stock_on_hand, lot_named(DEMO_LOT).units_remaining) == (0, 0)
        line = db.session.scalars(sa.select(StockMovement).where(StockMovement.kind == "expiry")).one()
        assert (line.units, line.strength_id) == (-2400, nal50)
        with pytest.raises(orders.CheckoutError, match="Naltrexone 50 mg in packs of 90 tablets is sold out"):
            orders.place_order(db.session.get(User, users["customer"]), address_for(users["customer"]), "t2")
    page = client.get("/products/naltrexone?strength=50-mg").get_data(as_text=True)
    assert "Out of stock" in page


def test_units_that_orders_depend_on_are_held_until_new_stock_arrives(
    app: Flask, admin: FlaskClient, nal50: int, users: dict[str, int]
) -> None:
    with app.app_context():
        order = place_order_for(users["customer"], 90)
        expire(DEMO_LOT)
        assert inventory.write_off_expired() == 2310  # 90 are promised to the order
        strength = db.session.get(Strength, nal50)
        assert (strength.stock_on_hand, strength.stock_allocated) == (90, 90)
        assert inventory.available_units(strength) == 0
        order_id = order.id
        with pytest.raises(orders.CannotDispense):  # the held units are never dispensed
            pay_and_dispense(order_id, users["pharmacist"])
        db.session.rollback()
    page = admin.get(f"/admin/stock/strengths/{nal50}").get_data(as_text=True)
    assert "90 allocated units are not covered by unexpired stock." in page
    assert "Expired: not sellable" in page

    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/receive",
                     {"lot_number": "NX-NEW", "expiry_date": IN_A_YEAR, "units": "100"})
    assert status == 302
    with app.app_context():
        strength = db.session.get(Strength, nal50)
        assert (strength.stock_on_hand, strength.stock_allocated) == (100, 90)  # the held 90 written off
        assert lot_named(DEMO_LOT).units_remaining == 0
        orders.release_for_dispensing(db.session.get(Order, order_id), db.session.get(User, users["pharmacist"]),
                                      db.session.get(Order, order_id).total_cents)
        assert lot_named("NX-NEW").units_remaining == 10
        assert on_hand_ledger_total(nal50) == db.session.get(Strength, nal50).stock_on_hand == 10


# Low stock and expiring lots --------------------------------------------------------------------


def test_low_stock_uses_the_threshold_or_the_default(app: Flask, admin: FlaskClient, nal50: int) -> None:
    page = admin.get("/admin/stock/low").get_data(as_text=True)
    assert "Disulfiram 500 mg" in page  # 40 units; default 5 packs of 30 = 150
    assert "Naltrexone 50 mg" not in page  # 2,400 units
    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/threshold", {"low_stock_units": "2400"})
    assert status == 302
    assert "Naltrexone 50 mg" in admin.get("/admin/stock/low").get_data(as_text=True)
    status, page = post(admin, f"/admin/stock/strengths/{nal50}/threshold", {"low_stock_units": "-5"})
    assert status == 422 and "Enter between 0 and 1,000,000 units" in page
    status, _ = post(admin, f"/admin/stock/strengths/{nal50}/threshold", {"low_stock_units": ""})
    assert status == 302
    with app.app_context():
        assert db.session.get(Strength, nal50).low_stock_units is None
        assert [e.details_dict["after"] for e in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "stock.threshold_changed")
            .order_by(AuditEvent.id))] == [2400, None]
    assert "Naltrexone 50 mg" not in admin.get("/admin/stock/low").get_data(as_text=True)


def test_lots_expiring_within_90_days_are_listed(app: Flask, admin: FlaskClient, nal50: int,
                                                 users: dict[str, int]) -> None:
    soon = dt.date.today() + dt.timedelta(days=30)
    with app.app_context():
        for number, expiry in (("SOON-1", soon), ("LATER-1", dt.date.today() + dt.timedelta(days=120))):
            stock.receive(db.session.get(Strength, nal50), lot_number=number, expiry_date=expiry, units=50,
                          supplier_reference="", actor=admin_user(users))
        expire("DEMO-THIAMINE-100-MG")
    page = admin.get("/admin/stock/expiring").get_data(as_text=True)
    assert "SOON-1" in page and "30 days left" in page
    assert "DEMO-THIAMINE-100-MG" in page and "Expired" in page
    assert "LATER-1" not in page and DEMO_LOT not in page


# CSV --------------------------------------------------------------------------------------------


def upload(client: FlaskClient, text: str) -> tuple[int, str]:
    token = csrf_token(client, "/admin/stock/import")
    response = client.post("/admin/stock/import", content_type="multipart/form-data", data={
        "csrf_token": token, "file": (io.BytesIO(text.encode()), "stock.csv")})
    return response.status_code, response.get_data(as_text=True)


HEADER = "product_slug,strength_slug,lot_number,expiry_date,units_remaining,supplier_reference\n"


def test_a_csv_with_one_bad_row_applies_nothing_and_lists_the_row(
    app: Flask, admin: FlaskClient, nal50: int
) -> None:
    with app.app_context():
        demo_expiry = lot_named(DEMO_LOT).expiry_date.isoformat()
        before = counts()
    text = (HEADER
            + f"naltrexone,50-mg,NX-9,{IN_A_YEAR},200,PO 9\n"
            + f"naltrexone,50-mg,{DEMO_LOT},{demo_expiry},2000,\n"
            + f"naltrexone,75-mg,NX-10,{IN_A_YEAR},5,\n")
    status, page = upload(admin, text)
    assert status == 422
    assert "Nothing was imported: 1 problem found" in page
    assert re.search(r"<th scope=\"row\">4</th><td[^>]*>No strength &#39;75-mg&#39; of product &#39;naltrexone&#39;",
                     page)
    with app.app_context():
        assert counts() == before
        assert db.session.get(Strength, nal50).stock_on_hand == 2400
        assert lot_named(DEMO_LOT).units_remaining == 2400


@pytest.mark.parametrize(("line", "message"), [
    ("naltrexone,50-mg,NX-9,{past},200,", "expiry_date: The expiry date must be in the future"),
    ("naltrexone,50-mg,NX-9,{year},0,", "units_remaining: Enter between 1 and 1,000,000 units."),
    ("naltrexone,50-mg,NX-9,31/12/2030,5,", "is not a date written YYYY-MM-DD"),
    ("naltrexone,50-mg,NX-9,{year},-5,", "is not a whole number of 0 or more"),
    ("naltrexone,50-mg,{demo},{demo_expiry},2401,", "cannot hold 2,401"),
    ("naltrexone,50-mg,{demo},{year},100,", "an import cannot change an expiry date"),
    ("naltrexone,50-mg,{demo},{demo_expiry},1", "Expected 6 values, found 5."),
    ("naltrexone,50-mg,{demo},{demo_expiry},5,\nnaltrexone,50-mg,{demo_lower},{demo_expiry},5,",
     "is listed twice (first on line 3)"),
])
def test_each_kind_of_bad_row_is_explained(app: Flask, admin: FlaskClient, line: str, message: str) -> None:
    with app.app_context():
        demo_expiry = lot_named(DEMO_LOT).expiry_date.isoformat()
        before = counts()
        thiamine = lot_named("DEMO-THIAMINE-100-MG")
        good = f"thiamine,100-mg,{thiamine.lot_number},{thiamine.expiry_date},4000,\n"  # a count correction
    values = {"past": "2020-01-01", "year": IN_A_YEAR, "demo": DEMO_LOT, "demo_lower": DEMO_LOT.lower(),
              "demo_expiry": demo_expiry}
    text = HEADER + good + line.format(**values) + "\n"
    status, page = upload(admin, text)
    assert status == 422
    assert message.replace("'", "&#39;") in page
    with app.app_context():
        assert counts() == before


def test_a_good_csv_is_applied_in_one_transaction(app: Flask, admin: FlaskClient, nal50: int,
                                                 users: dict[str, int]) -> None:
    exported = admin.get("/admin/stock/export.csv")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert "attachment" in exported.headers["Content-Disposition"]
    lines = exported.get_data(as_text=True).splitlines()
    assert lines[0] == HEADER.strip() and len(lines) == 9  # the 8 demo lots
    # Unchanged, the export imports as "nothing to do".
    status, _ = upload(admin, "\n".join(lines) + "\n")
    assert status == 302
    assert "8 unchanged" in admin.get("/admin/stock").get_data(as_text=True)

    counted = [line.replace(",2400,", ",2350,") if DEMO_LOT in line else line for line in lines]
    counted.append(f"naltrexone,50-mg,NX-20,{IN_A_YEAR},120,=HYPERLINK(x)")
    status, _ = upload(admin, "\n".join(counted) + "\n")
    assert status == 302
    assert "1 received, 1 count(s) corrected, 7 unchanged" in admin.get("/admin/stock").get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Strength, nal50).stock_on_hand == 2400 - 50 + 120
        assert on_hand_ledger_total(nal50) == 2470
        correction = db.session.scalars(sa.select(StockMovement).where(
            StockMovement.reason_code == "count_correction")).one()
        assert (correction.units, correction.actor_id) == (-50, users["admin"])
        assert "counted 2,350 (was 2,400)" in correction.reason
        assert lot_named("NX-20").supplier_reference == "=HYPERLINK(x)"
        actions = list(db.session.scalars(sa.select(AuditEvent.action).where(
            AuditEvent.action.like("stock.%")).order_by(AuditEvent.id)))
        assert actions == ["stock.imported", "stock.adjusted", "stock.received", "stock.imported"]
    again = admin.get("/admin/stock/export.csv").get_data(as_text=True)
    assert f"naltrexone,50-mg,NX-20,{IN_A_YEAR},120,'=HYPERLINK(x)" in again  # inert in a spreadsheet


def test_the_import_page_refuses_a_missing_or_wrong_file(app: Flask, admin: FlaskClient) -> None:
    status, page = post(admin, "/admin/stock/import", {})
    assert status == 422 and "Choose a CSV file." in page
    status, page = upload(admin, "lot,units\nA,1\n")
    assert status == 422 and "Missing: product_slug" in page


# Access -----------------------------------------------------------------------------------------


def test_none_of_it_is_reachable_by_customers_or_pharmacists(
    app: Flask, signed_in: Callable[[str], FlaskClient], nal50: int
) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin_stock.")}
    assert endpoints == {row[0] for row in ROWS}
    with app.app_context():
        lot_id = lot_named(DEMO_LOT).id
        before = counts()
    valid = {"lot_number": "X-1", "expiry_date": IN_A_YEAR, "units": "5", "lot_id": lot_id,
             "reason_code": "damaged", "change": "-5", "low_stock_units": "1"}
    for role in ("customer", "pharmacist"):
        client = signed_in(role)
        token = csrf_token(client, "/account")
        for _endpoint, method, url, _data, _expected in ROWS:
            target = url.format(strength=nal50, lot=lot_id)
            response = client.get(target) if method == "GET" else client.post(
                target, data={**valid, "csrf_token": token})
            assert response.status_code == 403, (role, method, target)
    visitor = app.test_client()
    response = visitor.get("/admin/stock/export.csv")
    assert response.status_code == 302 and "/account/sign-in" in response.headers["Location"]
    with app.app_context():
        assert counts() == before
