"""Every endpoint against every role: visitor, customer, another customer, pharmacist, admin.

The table must name every endpoint of the app: a new endpoint without a row fails the test, so no
route ships without its access being checked. Codes: 200 page, 302> a redirect to sign-in,
302 another redirect, 403 wrong role, 404 someone else's object, 422 a form refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, ProfileEntry, User
from shop.extensions import db
from tests.access_roles import (
    ADMIN,
    CUSTOMER,
    OWN_OBJECT,
    PHARMACIST,
    PUBLIC,
    ROLES,
    SHOPPER,
    SIGN_IN,
    SIGNED_IN,
    VISITOR_ONLY,
    but,
)
from tests.admin.rows_catalog import ROWS as CATALOG_ROWS
from tests.admin.rows_prices import ROWS as PRICE_ROWS
from tests.admin.rows_stock import ROWS as STOCK_ROWS
from tests.admin.rows_users import ROWS as USER_ROWS
from tests.orders.rows_staff import ROWS as STAFF_ORDER_ROWS

# Rows of later areas live beside their tests, one file each, and are spliced in below.
EXTRA_ROWS = [*STAFF_ORDER_ROWS, *PRICE_ROWS, *STOCK_ROWS, *CATALOG_ROWS, *USER_ROWS]

# (endpoint, method, url, form data, expected). {address}, {entry} and {token} are the customer's;
# the `objects` fixture below lists every placeholder.
# Rows that change state for their owner come last, in an order that keeps later rows meaningful.
MATRIX = [
    ("catalog.home", "GET", "/", None, PUBLIC),
    ("catalog.product_list", "GET", "/products?q=ldn", None, PUBLIC),
    ("catalog.product_detail", "GET", "/products/naltrexone", None, PUBLIC),
    ("catalog.monograph_list", "GET", "/monographs", None, PUBLIC),
    ("catalog.monograph_detail", "GET", "/monographs/naltrexone", None, PUBLIC),
    ("pages.about", "GET", "/about", None, PUBLIC),
    ("pages.privacy", "GET", "/privacy", None, PUBLIC),
    ("pages.terms", "GET", "/terms", None, PUBLIC),
    ("notifications.mailbox", "GET", "/dev/mailbox", None, PUBLIC),  # development only
    ("accounts.register", "GET", "/account/register", None, VISITOR_ONLY),
    ("accounts.register", "POST", "/account/register", {}, VISITOR_ONLY),
    # The emailed link that finishes a registration (a real one: tests/accounts/test_sign_in.py).
    ("accounts.confirm_registration", "GET", "/account/register/no-such-link", None, dict.fromkeys(ROLES, 404)),
    ("accounts.confirm_registration", "POST", "/account/register/no-such-link", {}, dict.fromkeys(ROLES, 404)),
    ("accounts.login", "GET", "/account/sign-in", None, VISITOR_ONLY),
    ("accounts.login", "POST", "/account/sign-in", {}, VISITOR_ONLY),
    ("accounts.verify", "GET", "/account/sign-in/verify", None, dict.fromkeys(ROLES, SIGN_IN)),
    ("accounts.verify", "POST", "/account/sign-in/verify", {}, dict.fromkeys(ROLES, SIGN_IN)),
    ("accounts.enrol", "GET", "/account/sign-in/enrol", None, dict.fromkeys(ROLES, SIGN_IN)),
    ("accounts.enrol", "POST", "/account/sign-in/enrol", {}, dict.fromkeys(ROLES, SIGN_IN)),
    ("accounts.reset_request", "GET", "/account/reset", None, PUBLIC),
    ("accounts.reset_request", "POST", "/account/reset", {}, PUBLIC),
    ("accounts.reset", "GET", "/account/reset/{token}", None, PUBLIC),
    ("accounts.reset", "POST", "/account/reset/{token}", {}, PUBLIC),
    ("accounts.overview", "GET", "/account", None, SIGNED_IN),
    ("accounts.change_password", "GET", "/account/password", None, SIGNED_IN),
    ("accounts.change_password", "POST", "/account/password", {}, SIGNED_IN),
    ("accounts.two_factor_settings", "GET", "/account/two-factor", None, SIGNED_IN),
    ("accounts.two_factor_settings", "POST", "/account/two-factor", {}, SIGNED_IN),
    ("accounts.disable_two_factor", "POST", "/account/two-factor/disable", {},
     but(SIGNED_IN, customer=302, other_customer=302, pharmacist=302, admin=302)),
    ("admin.dashboard", "GET", "/admin/", None, ADMIN),
    ("admin.audit_log", "GET", "/admin/audit?action=sign_in.succeeded", None, ADMIN),
    ("profile.profile", "GET", "/account/profile", None, CUSTOMER),
    ("profile.profile", "POST", "/account/profile", {}, CUSTOMER),
    ("profile.add_health_entry", "POST", "/account/health/allergy", {"allergy-text": ""},
     but(CUSTOMER, customer=422, other_customer=422)),
    ("profile.addresses", "GET", "/account/addresses", None, CUSTOMER),
    ("profile.new_address", "GET", "/account/addresses/new", None, CUSTOMER),
    ("profile.new_address", "POST", "/account/addresses/new", {}, CUSTOMER),
    ("profile.edit_address", "GET", "/account/addresses/{address}", None, OWN_OBJECT),
    ("profile.edit_address", "POST", "/account/addresses/{address}", {}, OWN_OBJECT),
    ("prescriptions.index", "GET", "/prescriptions", None, CUSTOMER),
    ("prescriptions.upload", "GET", "/prescriptions/new", None, CUSTOMER),
    ("prescriptions.upload", "POST", "/prescriptions/new", {}, CUSTOMER),
    ("prescriptions.detail", "GET", "/prescriptions/{rx}", None, OWN_OBJECT),
    ("prescriptions.file", "GET", "/prescriptions/{rx}/files/{rx_file}", None,
     but(OWN_OBJECT, pharmacist=200, admin=404)),
    ("pharmacy.queue", "GET", "/pharmacy/queue", None, PHARMACIST),
    ("pharmacy.review", "GET", "/pharmacy/prescriptions/{rx}", None, PHARMACIST),
    ("pharmacy.claim", "POST", "/pharmacy/prescriptions/{rx}/claim", {}, but(PHARMACIST, pharmacist=302)),
    ("pharmacy.approve", "POST", "/pharmacy/prescriptions/{rx}/approve", {}, but(PHARMACIST, pharmacist=422)),
    ("pharmacy.reject", "POST", "/pharmacy/prescriptions/{rx}/reject", {}, but(PHARMACIST, pharmacist=422)),
    ("pharmacy.release", "POST", "/pharmacy/prescriptions/{rx}/release", {}, but(PHARMACIST, pharmacist=302)),
    ("cart.show", "GET", "/cart", None, SHOPPER),
    ("cart.add", "POST", "/cart/add", {}, but(SHOPPER, visitor=400, customer=400, other_customer=400)),
    ("cart.update", "POST", "/cart/update", {}, but(SHOPPER, visitor=400, customer=400, other_customer=400)),
    ("checkout.start", "GET", "/checkout", None, but(CUSTOMER, customer=302, other_customer=302)),
    ("checkout.place", "POST", "/checkout", {}, but(CUSTOMER, customer=400, other_customer=400)),
    ("orders.index", "GET", "/orders", None, CUSTOMER),
    ("orders.detail", "GET", "/orders/{order}", None, OWN_OBJECT),
    ("orders.pay", "GET", "/orders/{order}/pay", None, OWN_OBJECT),
    ("orders.pay_submit", "POST", "/orders/{order}/pay", {}, but(OWN_OBJECT, customer=422)),
    # No payment begun (showing the pay page starts none): nothing to check, back to the order.
    ("orders.pay_check", "POST", "/orders/{order}/pay/check", {}, but(OWN_OBJECT, customer=302)),
    ("payments.webhook", "POST", "/stripe/webhook", {}, dict.fromkeys(ROLES, 400)),
    # Cancels the customer's unpaid order (their run only; later rows do not need it unpaid).
    ("orders.cancel", "POST", "/orders/{order}/cancel", {}, but(OWN_OBJECT, customer=302)),
    *EXTRA_ROWS,
    ("profile.make_default_address", "POST", "/account/addresses/{address}/default", {},
     but(OWN_OBJECT, customer=302)),
    ("profile.remove_health_entry", "POST", "/account/health/{entry}/delete", {},
     but(OWN_OBJECT, customer=302)),
    ("profile.delete_address", "POST", "/account/addresses/{address}/delete", {},
     but(OWN_OBJECT, customer=302)),
    ("accounts.logout", "POST", "/account/sign-out", {}, but(SIGNED_IN, customer=302,
                                                           other_customer=302, pharmacist=302,
                                                           admin=302)),
]


def test_the_matrix_covers_every_endpoint(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"}
    assert endpoints == {row[0] for row in MATRIX}


def token_for(client: FlaskClient) -> str:
    for url in ("/account", "/account/sign-in"):
        html = client.get(url).get_data(as_text=True)
        match = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', html)
        if match:
            return match.group(1)
    raise AssertionError("no CSRF token found")


def outcome(response) -> object:
    if response.status_code == 302 and re.search(
        r"/account/sign-in(\?|$)", response.headers["Location"]
    ):
        return SIGN_IN
    return response.status_code


@pytest.fixture
def objects(app: Flask, users: dict[str, int]) -> dict[str, object]:
    return build_objects(app, users)


def build_objects(app: Flask, users: dict[str, int]) -> dict[str, object]:
    """An address, a health entry and a prescription of `customer`, and a live reset token."""
    from shop.accounts import services
    from shop.prescriptions import services as prescriptions
    from shop.prescriptions.storage import store_for_app
    from tests.prescriptions.conftest import png_bytes

    with app.app_context():
        customer = db.session.get(User, users["customer"])
        address = Address(user=customer, recipient="C", line1="1 Main St", city="Portland",
                          state="OR", postal_code="97204", is_default=True)
        entry = ProfileEntry(user=customer, kind="allergy", text="Latex")
        db.session.add_all([address, entry])
        db.session.commit()
        links: list[str] = []
        with app.test_request_context():
            services.request_password_reset("customer@example.com", lambda t: links.append(t) or t)
        prescription = prescriptions.upload(customer, [prescriptions.Upload(png_bytes(), "rx.png")],
                                            requested_product_id=None, note="", store=store_for_app(app))
        from shop.cart import services as cart
        from shop.catalog.models import Package, Strength
        from shop.orders import services as orders

        thiamine = db.session.scalars(sa.select(Package).join(Strength).where(Strength.slug == "100-mg")).first()
        cart.add(customer, thiamine.id)
        order = orders.place_order(customer, address.id, "matrix-token")
        from shop.catalog.models import Monograph, Product
        from shop.inventory.models import StockLot

        naltrexone = db.session.scalars(sa.select(Product).where(Product.slug == "naltrexone")).one()
        strength = next(s for s in naltrexone.strengths if s.slug == "50-mg")
        package = next(p for p in strength.packages if p.units == 60)
        lot = db.session.scalars(sa.select(StockLot).where(StockLot.strength_id == strength.id)).first()
        monograph = db.session.scalars(sa.select(Monograph).where(Monograph.slug == "naltrexone")).one()
        alias = naltrexone.aliases[0]
        safety_entry = monograph.safety_entries[0]
        return {"address": address.id, "entry": entry.id, "token": links[0], "rx": prescription.id,
                "rx_file": prescription.files[0].id, "order": order.number,
                # Catalog objects: naltrexone, its 50 mg strength, that strength's 60 pack and a lot.
                "product": naltrexone.id, "product_slug": naltrexone.slug, "strength": strength.id,
                "package": package.id, "lot": lot.id, "monograph": monograph.id,
                "monograph_slug": monograph.slug, "alias": alias.id, "safety_entry": safety_entry.id,
                # Accounts by role, for the user-management pages.
                "customer_id": users["customer"], "pharmacist_id": users["pharmacist"],
                "admin_id": users["admin"]}


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(
    stripe_app: Flask, role: str, signed_in: Callable[[str], FlaskClient], objects: dict[str, object]
) -> None:
    app = stripe_app  # the payment pages talk to localstripe
    client = app.test_client() if role == "visitor" else signed_in(role)
    token = token_for(client)
    failures = []
    for endpoint, method, url, data, expected in MATRIX:
        target = url.format(**objects)
        if method == "GET":
            response = client.get(target)
        else:
            response = client.post(target, data={**(data or {}), "csrf_token": token})
        got = outcome(response)
        if got != expected[role]:
            failures.append(f"{method} {target} ({endpoint}): expected {expected[role]}, got {got}")
    assert failures == []
