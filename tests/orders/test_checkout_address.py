"""Checkout's address choice: "Add an address" comes back to checkout with the new address chosen."""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address
from shop.extensions import db
from tests.conftest import csrf_token
from tests.orders.test_checkout import address_for, package

NEW_ADDRESS = {"recipient": "Customer at work", "line1": "1200 NW Everett St", "line2": "Suite 400",
               "city": "Portland", "state": "OR", "postal_code": "97209", "country": "US", "phone": ""}


def chosen_address(html: str) -> list[str]:
    """The values of the checked address radio buttons on the checkout page."""
    return re.findall(r'<input type="radio" id="address-\d+" name="address_id" value="(\d+)" checked>', html)


def ready_to_check_out(app: Flask, client: FlaskClient, user_id: int) -> int:
    """The customer's default address id; the cart holds thiamine (no prescription needed)."""
    with app.app_context():
        default_id = address_for(user_id)
        package_id = package(100, "100-mg").id
    client.post("/cart/add", data={"package_id": package_id, "csrf_token": csrf_token(client, "/cart")})
    return default_id


def test_add_an_address_from_checkout_comes_back_with_it_chosen(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    default_id = ready_to_check_out(app, client, users["customer"])
    page = client.get("/checkout").get_data(as_text=True)
    assert chosen_address(page) == [str(default_id)]
    assert 'href="/account/addresses/new?next=/checkout">Add an address</a>' in page

    form_page = client.get("/account/addresses/new?next=%2Fcheckout").get_data(as_text=True)
    assert '<a href="/checkout">Cancel</a>' in form_page  # cancelling goes back to checkout too
    response = client.post("/account/addresses/new?next=%2Fcheckout", data={
        **NEW_ADDRESS, "csrf_token": csrf_token(client, "/account/addresses/new")})
    with app.app_context():
        new_id = db.session.scalars(sa.select(Address.id).where(Address.line1 == NEW_ADDRESS["line1"])).one()
    assert response.status_code == 302
    assert response.headers["Location"] == f"/checkout?address={new_id}"

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert chosen_address(page) == [str(new_id)]  # the new one, not the default
    # Each address says whose it is and which is the default, beside its own radio button.
    assert re.search(rf'<label for="address-{new_id}">\s*<strong class="choice-title">Customer at work', page)
    default_label = page[page.index(f'<label for="address-{default_id}">'):]
    assert re.match(r'[^§]*?</strong>\s*1 Main St, Portland, OR 97204, US\s*<span class="badge badge-otc">'
                    r"Default</span>", default_label)


def test_checkout_chooses_the_default_for_an_address_that_is_not_the_customers(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    default_id = ready_to_check_out(app, client, users["customer"])
    with app.app_context():
        others = address_for(users["other_customer"])
    for value in (str(others), "999999", "99999999999999999999", "²", "-1", "abc", ""):
        response = client.get("/checkout", query_string={"address": value})
        assert response.status_code == 200, value
        assert chosen_address(response.get_data(as_text=True)) == [str(default_id)], value


def test_the_address_form_goes_back_only_to_a_page_of_this_shop(
    app: Flask, signed_in: Callable[[str], FlaskClient], users: dict[str, int]
) -> None:
    client = signed_in("customer")
    for target in ("https://evil.example/checkout", "//evil.example", "/\\evil.example"):
        response = client.post("/account/addresses/new", query_string={"next": target}, data={
            **NEW_ADDRESS, "csrf_token": csrf_token(client, "/account/addresses/new")})
        assert response.status_code == 302, target
        assert response.headers["Location"] == "/account/addresses", target
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Address.id))) == 3
