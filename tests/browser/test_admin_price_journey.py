"""An admin changes the 60-pack price of naltrexone 50 mg in a real headless Chromium.

The admin signs in with a password and a TOTP code, opens the price editor from the price list, types
a price that would make the 60 pack cheaper per pill than the 90 pack (the preview warns), corrects
it, previews the table as customers will see it, and saves. A visitor's product page then shows the
new price per pill and saving. Screenshots of the preview and the product page go to tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.helpers import TIMEOUT_MS, chromium, record_problems
from tests.browser.test_prescription_journey import expect_flash, sign_in
from tests.conftest import TOTP_SECRET

ADMIN_EMAIL = "admin@example.com"
# (package, per pill, price, list price, saving) as the table shows them.
AT_399 = [
    ("30 film-coated tablets", "$7.14", "$214.24", "—", "—"),
    ("60 film-coated tablets", "$6.65", "$399.00", "was $428.48", "6%"),
    ("90 film-coated tablets", "$6.62 Best per pill", "$595.68", "was $642.72", "7%"),
]


def expect_rows(table: Locator, rows: list[tuple[str, str, str, str, str]]) -> None:
    body_rows = table.locator("tbody").get_by_role("row")
    expect(body_rows).to_have_count(len(rows))
    for index, (units, per_pill, price, list_price, saving) in enumerate(rows):
        row = body_rows.nth(index)
        expect(row.get_by_role("rowheader")).to_have_text(units)
        cells = row.get_by_role("cell")
        for column, text in enumerate((per_pill, price, list_price, saving)):
            expect(cells.nth(column)).to_have_text(text)


def package_table(page: Page, caption_start: str) -> Locator:
    return page.get_by_role("table", name=re.compile("^" + re.escape(caption_start)))


@pytest.mark.browser
def test_admin_changes_the_60_pack_price_and_customers_see_it(
    live_server: str, artifacts: Path, users: dict[str, int]
) -> None:
    problems: list[str] = []
    with chromium() as browser:
        admin_context = browser.new_context(viewport={"width": 1280, "height": 900})
        admin_context.set_default_timeout(TIMEOUT_MS)
        record_problems(admin_context, problems)
        admin = admin_context.new_page()

        # 1. Sign in with the second factor, then the price list -> naltrexone 50 mg.
        sign_in(admin, live_server, ADMIN_EMAIL, totp_secret=TOTP_SECRET)
        admin.goto(live_server + "/admin/prices")
        expect(admin.get_by_role("heading", level=1)).to_have_text("Prices")
        admin.get_by_role("link", name="Edit prices of Naltrexone 50 mg", exact=True).click()
        expect(admin).to_have_url(re.compile(re.escape(live_server) + r"/admin/prices/strengths/\d+$"))
        expect(admin.get_by_role("heading", level=1)).to_have_text("Prices: Naltrexone 50 mg film-coated tablets")
        expect(admin.get_by_role("heading", name="What customers see now")).to_be_visible()
        editor = admin.get_by_role("region", name="Package prices")
        new_price = editor.get_by_label("New price for 60 film-coated tablets", exact=True)
        expect(new_price).to_have_value("405.46")

        # 2. A price that makes the 60 pack cheaper per pill than the 90 pack: the preview warns.
        new_price.fill("390.00")
        editor.get_by_role("button", name="Preview").click()
        expect(admin.get_by_role("heading", name="Preview: what customers will see")).to_be_visible()
        expect(admin.get_by_role("list", name="Price warnings").get_by_role("listitem")).to_have_text(
            ["Check The 90 pack costs more per pill ($6.62) than the 60 pack ($6.50)."])
        preview = package_table(admin, "Preview: Naltrexone 50 mg")
        expect(preview.get_by_role("row", name=re.compile("^60 film-coated tablets"))).to_contain_text(
            "$6.50 Best per pill")
        admin.screenshot(path=artifacts / "admin-price-warning.png", full_page=True)

        # 3. Corrected: no warning, the new per-pill price and saving, nothing saved yet.
        new_price = admin.get_by_role("region", name="Package prices").get_by_label(
            "New price for 60 film-coated tablets", exact=True)
        expect(new_price).to_have_value("390.00")  # what was typed is kept
        new_price.fill("399.00")
        admin.get_by_role("button", name="Preview").click()
        expect(admin.get_by_role("list", name="Price warnings")).to_have_count(0)
        expect_rows(package_table(admin, "Preview: Naltrexone 50 mg"), AT_399)
        expect(admin.get_by_text("Not saved yet.")).to_be_visible()
        admin.screenshot(path=artifacts / "admin-price-preview.png", full_page=True)

        # 4. Save with a reason: the history shows who changed what.
        editor = admin.get_by_role("region", name="Package prices")
        editor.get_by_label("Reason for the new prices (optional)", exact=True).fill("Supplier price rise")
        editor.get_by_role("button", name="Save prices").click()
        expect_flash(admin, "1 price saved. Customers see the new prices now.")
        expect(admin.get_by_role("heading", name="What customers see now")).to_be_visible()
        expect_rows(package_table(admin, "Naltrexone 50 mg"), AT_399)
        history_row = admin.get_by_role("region", name="Price history").locator("tbody tr").first
        expect(history_row.get_by_role("cell")).to_have_text(
            [re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$"), "Price changed", "$405.46", "$399.00", ADMIN_EMAIL,
             "Supplier price rise"])
        expect(admin.get_by_role("region", name="Package prices").get_by_label(
            "New price for 60 film-coated tablets", exact=True)).to_have_value("399.00")
        admin.screenshot(path=artifacts / "admin-price-saved.png", full_page=True)

        # 5. A visitor's product page: the new per-pill price and saving of the 60 pack.
        shopper = browser.new_context(viewport={"width": 1280, "height": 900})
        shopper.set_default_timeout(TIMEOUT_MS)
        record_problems(shopper, problems)
        product = shopper.new_page()
        product.goto(live_server + "/products/naltrexone")
        expect(product.get_by_role("heading", level=1)).to_have_text("Naltrexone")
        expect_rows(package_table(product, "Naltrexone 50 mg film-coated tablets"), AT_399)
        product.screenshot(path=artifacts / "product-page-after-price-change.png", full_page=True)

    assert problems == []
