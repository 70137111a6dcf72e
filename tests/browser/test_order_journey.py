"""Buying a prescription medicine from product page to release, in a real headless Chromium.

A customer with an approved prescription for 90 naltrexone 50 mg tablets adds the 90 pack, sees the
cart's prescription check pass, checks out, and pays on the payment page with a test card typed into
the card form of Stripe's script (localstripe's stand-in on loopback). The order page shows it paid.
A pharmacist then releases it (the card is charged at that moment) and the customer sees the change.
Screenshots of the payment page and the order page go to tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from shop.extensions import db
from shop.orders.models import Order
from shop.payments.gateway import gateway_for_app
from tests.browser.helpers import chromium
from tests.browser.test_prescription_journey import expect_flash, open_page, sign_in
from tests.conftest import TOTP_SECRET
from tests.orders.test_checkout import address_for, prescription

CUSTOMER_EMAIL = "customer@example.com"
PHARMACIST_EMAIL = "pharmacist@example.com"
TEST_CARD = {"number": "4242424242424242", "exp_month": "12", "exp_year": "34", "cvc": "123",
             "postal_code": "97204"}
DECLINED_CARD = {**TEST_CARD, "number": "4000000000000341"}  # localstripe declines it when charged


def type_card(page: Page, card: dict[str, str]) -> None:
    """Into the card form Stripe's script draws (localstripe's stand-in names its inputs by
    placeholder)."""
    element = page.locator("#card-element")
    for field, value in card.items():
        element.get_by_placeholder(field, exact=True).fill(value)


@pytest.mark.browser
def test_buy_pay_and_release_journey(
    stripe_app: Flask, live_server: str, artifacts: Path, users: dict[str, int]
) -> None:
    with stripe_app.app_context():
        prescription_id = prescription(users["customer"], quantity=90)
        address_for(users["customer"])

    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        customer = open_page(context, problems)

        # 1. Sign in, open naltrexone and add the 90 pack.
        sign_in(customer, live_server, CUSTOMER_EMAIL)
        customer.goto(live_server + "/products/naltrexone")
        customer.get_by_role("button", name="Add to cart (90 film-coated tablets)").click()
        expect_flash(customer, "Added 1 pack of 90 tablets of Naltrexone 50 mg to your cart.")

        # 2. The cart shows the prescription that covers the line; checkout is open.
        customer.goto(live_server + "/cart")
        expect(customer.get_by_text(f"Covered by prescription #{prescription_id} (90 units left).")
               ).to_be_visible()
        customer.get_by_role("link", name="Checkout").click()
        expect(customer.get_by_role("heading", level=1)).to_have_text("Checkout")
        expect(customer.get_by_label("R, 1 Main St")).to_be_checked()
        customer.get_by_role("button", name="Place order and pay").click()

        # 3. The payment page: the summary from the database and Stripe's card form.
        expect(customer.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Pay for order CW-"))
        number = customer.get_by_role("heading", level=1).inner_text().rsplit(" ", 1)[1]
        with stripe_app.app_context():  # showing the page began no payment: the card's POST does
            assert db.session.query(Order).filter_by(number=number).one().payment_intent_id is None
        expect(customer.get_by_role("button", name="Pay $595.68")).to_be_visible()
        # A card the bank declines first: the page says so and the order waits.
        type_card(customer, DECLINED_CARD)
        customer.get_by_role("button", name="Pay $595.68").click()
        expect(customer.get_by_role("alert").filter(has_text="declined")).to_be_visible()
        expect(customer.get_by_role("heading", level=1)).to_have_text(f"Pay for order {number}")
        type_card(customer, TEST_CARD)
        customer.screenshot(path=str(artifacts / "order-payment.png"), full_page=True)
        customer.get_by_role("button", name="Pay $595.68").click()

        # 4. Back on the order page: authorised, not yet charged.
        expect(customer).to_have_url(f"{live_server}/orders/{number}")
        expect_flash(customer, "Thank you: your card is authorised. It is charged only when our "
                               "pharmacist releases the order.")
        expect(customer.get_by_text("Paid (card authorised)", exact=True)).to_be_visible()
        timeline = customer.get_by_role("list").filter(has_text="Order placed")
        expect(timeline.get_by_role("listitem")).to_have_count(2)
        expect(timeline.get_by_role("listitem").nth(1)).to_contain_text("Payment authorised")
        customer.screenshot(path=str(artifacts / "order-paid.png"), full_page=True)
        with stripe_app.app_context():
            order = db.session.query(Order).filter_by(number=number).one()
            intent = gateway_for_app(stripe_app).retrieve(order.payment_intent_id)
            assert (intent.status, intent.amount) == ("requires_capture", 59568)

        # 5. The pharmacist releases it from the staff order pages.
        staff_context = browser.new_context(viewport={"width": 1280, "height": 900})
        pharmacist = open_page(staff_context, problems)
        sign_in(pharmacist, live_server, PHARMACIST_EMAIL, totp_secret=TOTP_SECRET)
        pharmacist.goto(f"{live_server}/staff/orders")
        pharmacist.get_by_role("link", name=number).click()
        expect(pharmacist.get_by_text(f"#{prescription_id}").first).to_be_visible()
        pharmacist.get_by_role("button", name=re.compile(r"^Release")).click()
        expect(pharmacist.get_by_role("status")).to_contain_text(number)
        pharmacist.screenshot(path=str(artifacts / "order-released-staff.png"), full_page=True)

        # 6. The customer sees the change; the card has now been charged.
        customer.reload()
        expect(customer.get_by_text("Released by our pharmacist", exact=True)).to_be_visible()
        expect(timeline.get_by_role("listitem").nth(2)).to_contain_text("Released by our pharmacist")
        with stripe_app.app_context():
            assert gateway_for_app(stripe_app).retrieve(order.payment_intent_id).status == "succeeded"

    # The declined card's page answers 422 (a refused form) on purpose: Chromium logs that one.
    declined = [p for p in problems if "status of 422" in p and f"/orders/{number}/pay" in p]
    assert len(declined) == 1
    assert [p for p in problems if p not in declined] == []
