"""One shopper's journey through the catalog in a real headless Chromium.

Search by brand name, open the product page, read the package table, switch strength, read the
monograph; then the same product page on a phone-sized screen. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.helpers import TIMEOUT_MS, chromium, record_problems

# The monograph's table of contents: the section titles of the seed monograph, then the FAQ.
NALTREXONE_CONTENTS = [
    "Overview",
    "How it works",
    "How the body handles it",
    "Approved uses",
    "Off-label uses (low-dose naltrexone)",
    "Dosing",
    "Contraindications and warnings",
    "Interactions",
    "Side effects",
    "Evidence",
    "How it compares",
    "Frequently asked questions",
]


def package_table(page: Page, caption_start: str) -> Locator:
    """The package table, found by its accessible name (its caption)."""
    return page.get_by_role("table", name=re.compile("^" + re.escape(caption_start)))


def expect_package_rows(table: Locator, rows: list[dict[str, str]]) -> None:
    body_rows = table.locator("tbody").get_by_role("row")
    expect(body_rows).to_have_count(len(rows))
    for index, expected in enumerate(rows):
        body_row = body_rows.nth(index)
        expect(body_row.get_by_role("rowheader")).to_have_text(expected["package"])
        cells = body_row.get_by_role("cell")
        per_pill, price, list_price, saving = (cells.nth(i) for i in range(4))
        expect(per_pill).to_have_text(expected["per_pill"])
        expect(price).to_have_text(expected["price"])
        if expected["list_price"] == "—":
            expect(list_price).to_have_text("—")
            expect(list_price.locator("s")).to_have_count(0)
        else:
            struck = list_price.locator("s")
            expect(struck).to_have_text(f"was {expected['list_price']}")
            decoration = struck.evaluate("el => getComputedStyle(el).textDecorationLine")
            assert "line-through" in decoration, f"list price {expected['list_price']} is not struck through"
        expect(saving).to_have_text(expected["saving"])
    expect(table.get_by_text("Best per pill", exact=True)).to_have_count(1)
    best_row = body_rows.filter(has_text="Best per pill")
    expect(best_row.get_by_role("rowheader")).to_have_text(rows[-1]["package"])


NALTREXONE_50_MG = [
    {"package": "30 film-coated tablets", "per_pill": "$7.14", "price": "$214.24",
     "list_price": "—", "saving": "—"},
    {"package": "60 film-coated tablets", "per_pill": "$6.76", "price": "$405.46",
     "list_price": "$428.48", "saving": "5%"},
    {"package": "90 film-coated tablets", "per_pill": "$6.62 Best per pill", "price": "$595.68",
     "list_price": "$642.72", "saving": "7%"},
]  # fmt: skip
NALTREXONE_4_5_MG = [
    {"package": "30 compounded capsules", "per_pill": "$1.50", "price": "$45.00",
     "list_price": "—", "saving": "—"},
    {"package": "90 compounded capsules", "per_pill": "$1.32 Best per pill", "price": "$118.80",
     "list_price": "$135.00", "saving": "12%"},
]  # fmt: skip


@pytest.mark.browser
def test_search_product_strength_and_monograph_journey(live_server: str, artifacts: Path) -> None:
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        record_problems(context, problems)
        page = context.new_page()

        # Home page, then search by brand name with the keyboard.
        page.goto(live_server + "/")
        expect(page.get_by_role("heading", level=1)).to_have_text("Medicines at honest per-pill prices")
        search = page.get_by_role("search").get_by_label("Search medicines")
        search.fill("ReVia")
        search.press("Enter")
        expect(page).to_have_url(re.compile(r"/products\?q=ReVia$"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Search results for “ReVia”")
        expect(page.get_by_role("status")).to_have_text("1 medicine found.")
        expect(page.get_by_label("Search medicines")).to_have_value("ReVia")

        # Product page, 50 mg by default.
        page.get_by_role("main").get_by_role("link", name="Naltrexone", exact=True).click()
        expect(page).to_have_url(live_server + "/products/naltrexone")
        expect(page.get_by_role("heading", level=1)).to_have_text("Naltrexone")
        strengths = page.get_by_role("region", name="Choose a strength")
        expect(strengths.get_by_role("link")).to_have_count(4)
        expect(strengths.locator("[aria-current=true]")).to_have_text(re.compile(r"^\s*50 mg\s"))
        packages_heading = page.get_by_role("heading", name=re.compile("^Packages and prices"))
        expect(packages_heading).to_have_text("Packages and prices: 50 mg film-coated tablets")
        page.screenshot(path=artifacts / "product-page.png", full_page=True)  # taken first: helps debugging
        expect_package_rows(package_table(page, "Naltrexone 50 mg film-coated tablets"), NALTREXONE_50_MG)

        # Switch to the 4.5 mg capsule.
        strengths.get_by_role("link", name=re.compile(r"^4\.5 mg\b")).click()
        expect(page).to_have_url(re.compile(r"/products/naltrexone\?strength=4-5-mg$"))
        expect(strengths.locator("[aria-current=true]")).to_have_text(re.compile(r"^\s*4\.5 mg\s"))
        expect(packages_heading).to_have_text("Packages and prices: 4.5 mg compounded capsules")
        expect_package_rows(package_table(page, "Naltrexone 4.5 mg compounded capsules"), NALTREXONE_4_5_MG)

        # The monograph.
        page.get_by_role("link", name="Read the Naltrexone monograph").click()
        expect(page).to_have_url(live_server + "/monographs/naltrexone")
        expect(page.get_by_role("heading", level=1)).to_have_text("Naltrexone")
        contents = page.get_by_role("navigation", name="Contents")
        expect(contents.get_by_role("link")).to_have_text(NALTREXONE_CONTENTS)
        off_label_uses = page.get_by_role("table", name=re.compile(r"^Off-label uses \(not approved"))
        expect(off_label_uses.locator("tbody").get_by_role("rowheader")).to_have_count(5)
        expect(off_label_uses.get_by_text("Off-label", exact=True)).to_have_count(5)
        doses = page.get_by_role("table", name="Usual doses").locator("tbody").get_by_role("row")
        low_dose, licensed = (
            doses.filter(has_text="Low-dose naltrexone"),
            doses.filter(has_not_text="Low-dose naltrexone"),
        )
        expect(low_dose).to_have_count(2)
        expect(low_dose.get_by_text("Off-label", exact=True)).to_have_count(2)
        expect(licensed).to_have_count(2)
        expect(licensed.get_by_text("Off-label", exact=True)).to_have_count(0)
        back = page.get_by_role("link", name="Back to Naltrexone: prices and packages")
        expect(back).to_have_attribute("href", "/products/naltrexone")
        contents.get_by_role("link", name="Dosing", exact=True).click()
        expect(page).to_have_url(live_server + "/monographs/naltrexone#dosing")
        expect(page.get_by_role("heading", name="Dosing", exact=True)).to_be_in_viewport()
        context.close()

        # The 50 mg product page on a phone.
        phone = browser.new_context(viewport={"width": 390, "height": 844})
        phone.set_default_timeout(TIMEOUT_MS)
        record_problems(phone, problems)
        page = phone.new_page()
        page.goto(live_server + "/products/naltrexone")
        table = package_table(page, "Naltrexone 50 mg film-coated tablets")
        expect(table).to_be_visible()
        page.screenshot(path=artifacts / "product-page-phone.png", full_page=True)
        for row in NALTREXONE_50_MG:
            price = table.get_by_text(row["price"], exact=True)
            expect(price).to_be_visible()
            box = price.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (row["price"], box)
        widths = page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
        )
        assert widths["inner"] == 390, widths
        assert widths["scroll"] <= widths["inner"], f"the phone page scrolls sideways: {widths}"
        phone.close()

    assert problems == [], "the browser reported errors"
