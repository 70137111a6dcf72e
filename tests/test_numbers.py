"""The one integer parser (shop/numbers.py) and the `<int:...>` converter built on it."""

from __future__ import annotations

import pytest
from flask import Flask
from werkzeug.exceptions import NotFound
from wtforms import Form
from wtforms.validators import InputRequired

from shop.numbers import INT_MAX, IntField, parse_id, parse_int


@pytest.mark.parametrize("text", [
    "²", "٣", "３", "1²", "", " ", "+1", "--1", "1.0", "1e3", "0x10", "1_000", "1 000", "\x00", "1\x00",
    str(2**63), str(2**31), "99999999999999999999", "9" * 10_000, "-" + "9" * 10_000, None, 3, ["1"],
])
def test_parse_int_refuses_what_is_not_a_database_integer(text: object) -> None:
    assert parse_int(text) is None


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("42", 42), ("007", 7), (" 12 ", 12), ("\t5\n", 5), ("-1", -1),
    (str(INT_MAX), INT_MAX), (str(-(2**31)), -(2**31)),
])
def test_parse_int_reads_ascii_digits(text: str, value: int) -> None:
    assert parse_int(text) == value


def test_parse_int_bounds() -> None:
    assert parse_int("5", minimum=1, maximum=5) == 5
    assert parse_int("6", minimum=1, maximum=5) is None
    assert parse_int("0", minimum=1) is None
    assert parse_int("-3", minimum=0) is None
    assert parse_int(str(2**40), maximum=2**50) is None  # never beyond what a column holds


def test_parse_id_is_one_to_int_max() -> None:
    assert [parse_id(t) for t in ("1", str(INT_MAX), "0", "-1", str(INT_MAX + 1))] == [1, INT_MAX, None, None, None]


@pytest.mark.parametrize("segment", ["0", "-1", str(INT_MAX + 1), str(2**63), "99999999999999999999", "٣", "²",
                                     "３", "1a", "9" * 10_000])
def test_an_id_in_a_path_the_database_cannot_hold_is_not_found(app: Flask, segment: str) -> None:
    adapter = app.url_map.bind("localhost")
    with pytest.raises(NotFound):
        adapter.match(f"/admin/users/{segment}", method="GET")


def test_an_id_in_a_path_is_read_as_the_number(app: Flask) -> None:
    adapter = app.url_map.bind("localhost")
    assert adapter.match(f"/admin/users/{INT_MAX}", method="GET") == ("admin_users.detail", {"user_id": INT_MAX})
    assert adapter.build("admin_users.detail", {"user_id": 12}) == "/admin/users/12"


def test_unicode_digits_in_a_path_are_a_404_page(client) -> None:
    assert client.get("/account/addresses/%D9%A3").status_code == 404
    assert client.get("/account/addresses/99999999999999999999").status_code == 404


class CountForm(Form):
    count = IntField("Count", [InputRequired("Enter a count.")], minimum=1, maximum=100,
                     message="Enter a count from 1 to 100.")


class _Data(dict):
    def getlist(self, key: str) -> list[str]:
        value = self.get(key)
        return [] if value is None else [value]


@pytest.mark.parametrize("text", ["٣", "²", "0", "101", "99999999999999999999", "1.5", "\x00"])
def test_int_field_refuses_with_its_message(text: str) -> None:
    form = CountForm(_Data(count=text))
    assert not form.validate()
    assert form.count.errors == ["Enter a count from 1 to 100."]
    assert form.count.data is None


def test_int_field_reads_a_count_and_shows_what_was_typed() -> None:
    form = CountForm(_Data(count=" 7 "))
    assert form.validate() and form.count.data == 7
    bad = CountForm(_Data(count="٣"))
    bad.validate()
    assert bad.count._value() == "٣"  # the person sees what they typed beside the message
    assert not CountForm(_Data()).validate()


@pytest.mark.parametrize("typed", ["٣", "２0", "1٠.00"])
def test_a_price_in_unicode_digits_is_not_money(typed: str) -> None:
    from shop.money import InvalidPrice, parse_price

    with pytest.raises(InvalidPrice):
        parse_price(typed)


@pytest.mark.parametrize("typed", ["1e999999", "1E5", "1e-2", "NaN", "sNaN", "Infinity", "-inf", "0x10", "1_000"])
def test_a_price_is_a_plain_decimal(typed: str) -> None:
    """Decimal() takes these, and "1e999999" then overflowed on turning into cents (a 500)."""
    from shop.money import InvalidPrice, parse_price

    with pytest.raises(InvalidPrice, match="is not an amount of money"):
        parse_price(typed)


@pytest.mark.parametrize("typed", ["٣", "²", "0", "10001", "99999999999999999999"])
def test_a_package_size_is_a_whole_number_in_range(typed: str) -> None:
    from shop.admin.prices import parse_units

    with pytest.raises(ValueError, match="Enter a whole number from 1 to 10,000"):
        parse_units(typed)


@pytest.mark.parametrize("units", ["٣", str(2**31), "9999999999"])
def test_stock_import_units_are_ascii_digits_within_a_column(app_ctx: Flask, make_user, units: str) -> None:
    from shop.accounts.models import User
    from shop.admin.stock_csv import import_csv
    from shop.extensions import db

    admin = db.session.get(User, make_user("admin@example.com", role="admin"))
    header = "product_slug,strength_slug,lot_number,expiry_date,units_remaining,supplier_reference\n"
    result = import_csv(f"{header}naltrexone,50-mg,NX-NEW,2030-01-01,{units},\n".encode(), admin)
    assert not result.ok and result.received == 0
    assert "is not a whole number of 0 or more" in repr(result.errors)


@pytest.mark.parametrize("text", ["NaN", "sNaN", "Infinity", "-inf", "1e3", "1e999999", "٣", "1.5.1", ".", "", "1,5"])
def test_parse_decimal_takes_plain_decimals_only(text: str) -> None:
    from shop.numbers import parse_decimal

    assert parse_decimal(text) is None


def test_parse_decimal_reads_plain_decimals() -> None:
    from decimal import Decimal

    from shop.numbers import parse_decimal

    assert [parse_decimal(t) for t in ("1.5", " 2 ", ".25", "-3", "10.")] == [
        Decimal("1.5"), Decimal(2), Decimal(".25"), Decimal(-3), Decimal(10)]


@pytest.mark.parametrize("typed", ["NaN", "٣", "1e999999"])
def test_units_a_day_that_is_no_number_is_a_form_error(app: Flask, typed: str) -> None:
    """Decimal("NaN") passed WTForms and then failed the service's range comparison (a 500)."""
    from werkzeug.datastructures import MultiDict

    from shop.prescriptions.forms import ReviewForm

    with app.test_request_context(method="POST"):
        form = ReviewForm(MultiDict({"units_per_day": typed}), meta={"csrf": False})
        assert not form.units_per_day.validate(form)
        assert form.units_per_day.data is None
        assert form.units_per_day.errors == ["Enter a number such as 2 or 1.5."]


@pytest.mark.parametrize("address_id", ["²", "99999999999999999999", "٣", "-1"])
def test_checkout_with_an_address_id_that_is_no_id_places_nothing(
    app: Flask, signed_in, users: dict[str, int], address_id: str
) -> None:
    """"²" passed isdigit() and failed int(); a 20-digit id overflowed the driver: both were a 500."""
    import re

    import sqlalchemy as sa

    from shop.extensions import db
    from shop.orders.models import Order
    from tests.conftest import csrf_token
    from tests.orders.test_checkout_address import ready_to_check_out

    client = signed_in("customer")
    ready_to_check_out(app, client, users["customer"])
    page = client.get("/checkout").get_data(as_text=True)
    token = re.search(r'name="checkout_token" value="([^"]+)"', page).group(1)
    response = client.post("/checkout", data={"csrf_token": csrf_token(client, "/cart"), "checkout_token": token,
                                              "address_id": address_id})
    assert response.status_code == 302 and "/checkout" in response.headers["Location"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


@pytest.mark.parametrize("quantity", ["٣", "²", "99999999999999999999"])
def test_a_cart_count_that_is_no_whole_number_adds_nothing(app: Flask, quantity: str) -> None:
    """int("٣") is 3 (three packs went in); "²" and a 20-digit count were a 500."""
    from tests.conftest import csrf_token
    from tests.orders.test_checkout import package

    client = app.test_client()
    with app.app_context():
        package_id = package(100, "100-mg").id
    token = csrf_token(client)
    response = client.post("/cart/add", data={"package_id": package_id, "quantity": quantity, "csrf_token": token})
    assert response.status_code == 302
    page = client.get("/cart").get_data(as_text=True)
    assert "Choose between 1 and" in page
    for package_text in (str(package_id), "٣", "99999999999999999999"):
        refused = client.post("/cart/add", data={"package_id": package_text, "quantity": quantity, "csrf_token": token})
        assert refused.status_code in (302, 400)
    assert "Your cart is empty." in client.get("/cart").get_data(as_text=True)


def test_the_id_converter_takes_no_options() -> None:
    """A route asking for `<int(signed=True):...>` would silently get ids only; it fails at once."""
    from werkzeug.routing import Map, Rule

    from shop.numbers import IdConverter

    with pytest.raises(TypeError):
        Map([Rule("/x/<int(signed=True):n>")], converters={"int": IdConverter})
