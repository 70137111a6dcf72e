"""Every page of the main journeys at phone (390 px), tablet (768 and 1024 px) and desktop (1280 px)
width.

A customer, a pharmacist and an admin each sign in once; each page is opened once and looked at in
each width (the viewport is resized, so the media queries apply as on a real device). A page
fails when:
- the page is wider than the screen (it would scroll sideways), or
- any element sticks out of the box it sits in, sideways (cut text, a column hidden off-screen, a
  section poking out of its card). Scrolling inside a box does not excuse it: the cart's and the
  admin tables' key columns must be visible without scrolling, so no table is allowed to scroll;
- axe-core finds a WCAG 2.2 AA violation (the rules tagged wcag2a, wcag2aa, wcag21a, wcag21aa,
  wcag22aa).
A full-page screenshot of each page in each width goes to tests/artifacts/layouts/ (not committed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from axe_playwright_python.base import AXE_SCRIPT
from flask import Flask
from playwright.sync_api import Page, expect

from shop.accounts.models import Address
from shop.catalog.models import Strength
from shop.extensions import db
from tests.browser.helpers import chromium
from tests.browser.test_prescription_journey import open_page, sign_in
from tests.conftest import TOTP_SECRET
from tests.orders.test_checkout import prescription
from tests.prescriptions.conftest import png_bytes

# The phone, tablet and desktop widths, and a tablet held upright (cards side by side).
WIDTHS = (390, 768, 1024, 1280)
# axe-core takes a second or two a run: the phone and the desktop layout (the widths between share
# their markup and rules; the overflow check and the screenshot cover their layout).
AXE_WIDTHS = (390, 1280)
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
    "resultTypes": ["violations"],
}
# A long address, as real ones are: buttons and headings that name it must wrap, not widen the page.
LONG_EMAIL = "margaret.alexandra.whitfield-montgomery@clearwater-example.org"

# Sideways overflow of the page and of every element against the box it sits in. Visually hidden
# text is clipped to 1 px on purpose and is skipped; so are boxes that are not drawn.
OVERFLOW_SCRIPT = """
() => {
  const found = [];
  const describe = (el) => {
    let name = el.tagName.toLowerCase();
    if (el.id) name += '#' + el.id;
    if (typeof el.className === 'string' && el.className.trim()) {
      name += '.' + el.className.trim().split(/\\s+/).join('.');
    }
    const text = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim();
    return text ? `${name} "${text.replace(/\\s+/g, ' ').slice(0, 50)}"` : name;
  };
  const width = document.documentElement.scrollWidth;
  if (width > window.innerWidth) {
    found.push(`the page is ${width}px wide in a ${window.innerWidth}px window`);
  }
  const clipped = new Map();  // hidden on purpose: clipped to a pixel (.visually-hidden, a card table's head)
  const isClipped = (el) => {
    if (!el) return false;
    if (!clipped.has(el)) {
      const style = getComputedStyle(el);
      clipped.set(el, style.clip !== 'auto' || style.clipPath !== 'none' || isClipped(el.parentElement));
    }
    return clipped.get(el);
  };
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('script, style, noscript, template') || isClipped(el)) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    let container = el.parentElement;
    while (container && getComputedStyle(container).display === 'contents') {
      container = container.parentElement;
    }
    if (!container) continue;
    const outer = container.getBoundingClientRect();
    const left = outer.left - box.left, right = box.right - outer.right;
    if (left > 1 || right > 1) {
      const scroller = ['auto', 'scroll'].includes(getComputedStyle(container).overflowX);
      found.push(`${describe(el)} sticks out of ${describe(container)} by ` +
                 `${Math.round(Math.max(left, right))}px` + (scroller ? ' (scrolls sideways)' : ''));
    }
  }
  return found;
}
"""


def check(page: Page, name: str, artifacts: Path, failures: list[str]) -> None:
    """The page open in `page`, in every width: overflow, axe-core, and a screenshot."""
    page.wait_for_load_state("load")
    page.evaluate(AXE_SCRIPT)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for problem in page.evaluate(OVERFLOW_SCRIPT):
            failures.append(f"{name} at {width}px: {problem}")
        if width in AXE_WIDTHS:
            results = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
            for violation in results["violations"]:
                targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
                failures.append(f"{name} at {width}px: axe {violation['id']} ({violation['help']}): {targets}")
        page.screenshot(path=artifacts / f"{name}-{width}.png", full_page=True, timeout=30_000)
    page.set_viewport_size({"width": 1280, "height": 900})


def visit(page: Page, url: str, name: str, artifacts: Path, failures: list[str]) -> None:
    response = page.goto(url, timeout=20_000)  # the monograph is long; the machine may be busy
    assert response is not None and response.ok, f"{name}: {url} answered {response and response.status}"
    check(page, name, artifacts, failures)


@pytest.mark.browser
def test_main_journeys_fit_phone_tablet_and_desktop_and_pass_axe(
    stripe_app: Flask, live_server: str, artifacts: Path, tmp_path: Path,
    users: dict[str, int], make_user: Callable[..., int],
) -> None:
    with stripe_app.app_context():
        prescription(users["customer"], quantity=90)  # covers the 90 pack of naltrexone 50 mg
        db.session.add_all([
            Address(user_id=users["customer"], recipient="Customer", line1="1 Main St", city="Portland",
                    state="OR", postal_code="97204", is_default=True),
            Address(user_id=users["customer"], recipient="Customer at work",
                    line1="Suite 400, 1200 Northwest Everett Street", line2="Attn: mail room",
                    city="Portland", state="OR", postal_code="97209"),
        ])
        db.session.commit()
        strength_id = db.session.scalars(sa.select(Strength.id).where(Strength.slug == "50-mg")).one()
    long_user = make_user(LONG_EMAIL, legal_name="Margaret Alexandra Whitfield-Montgomery")
    scan = tmp_path / "prescription.png"
    scan.write_bytes(png_bytes())
    artifacts = artifacts / "layouts"
    artifacts.mkdir(exist_ok=True)

    failures: list[str] = []
    problems: list[str] = []
    with chromium() as browser:
        # The customer: catalog, cart with a covered and an uncovered prescription line, checkout,
        # payment, the order, prescriptions and the upload.
        customer = open_page(browser.new_context(viewport={"width": 1280, "height": 900}), problems)
        sign_in(customer, live_server, "customer@example.com")
        visit(customer, live_server + "/", "home", artifacts, failures)
        visit(customer, live_server + "/products?q=naltrexone", "search", artifacts, failures)
        visit(customer, live_server + "/products/naltrexone?strength=50-mg", "product", artifacts, failures)
        customer.get_by_role("button", name=re.compile(r"^Add to cart \(90 ")).click()
        customer.wait_for_load_state("load")
        visit(customer, live_server + "/monographs/naltrexone", "monograph", artifacts, failures)
        customer.goto(live_server + "/products/naltrexone?strength=4-5-mg")
        customer.get_by_role("button", name=re.compile(r"^Add to cart \(")).first.click()
        customer.wait_for_load_state("load")
        visit(customer, live_server + "/cart", "cart", artifacts, failures)
        upload_link = customer.get_by_role("link", name=re.compile(r"^Upload a prescription"))
        expect(upload_link).to_have_count(1)

        customer.get_by_role("button", name=re.compile(r"^Remove Naltrexone 4\.5 mg")).click()
        customer.wait_for_load_state("load")
        visit(customer, live_server + "/checkout", "checkout", artifacts, failures)
        customer.get_by_role("button", name="Place order and pay").click()
        expect(customer).to_have_url(re.compile(r"/orders/CW-[^/]+/pay$"))
        number = customer.url.rsplit("/", 2)[1]
        check(customer, "payment", artifacts, failures)
        visit(customer, f"{live_server}/orders/{number}", "order", artifacts, failures)

        visit(customer, live_server + "/prescriptions/new", "upload", artifacts, failures)
        customer.get_by_label("Prescription file(s)").set_input_files(scan)
        customer.get_by_label("For which medicine?").select_option(label="Naltrexone")
        customer.get_by_role("button", name="Upload prescription").click()
        expect(customer).to_have_url(re.compile(r"/prescriptions/\d+$"))
        check(customer, "prescription", artifacts, failures)
        visit(customer, live_server + "/prescriptions", "prescriptions", artifacts, failures)

        # The pharmacist: the queue, a claimed prescription's review page, the staff orders.
        pharmacist = open_page(browser.new_context(viewport={"width": 1280, "height": 900}), problems)
        sign_in(pharmacist, live_server, "pharmacist@example.com", totp_secret=TOTP_SECRET)
        visit(pharmacist, live_server + "/pharmacy/queue", "queue", artifacts, failures)
        pharmacist.get_by_role("button", name=re.compile(r"^Claim prescription")).click()
        expect(pharmacist.get_by_role("region", name="Transcribe and verify")).to_be_visible()
        pharmacist.wait_for_function("() => [...document.images].every(img => img.complete)")
        check(pharmacist, "review", artifacts, failures)
        visit(pharmacist, live_server + "/staff/orders", "staff-orders", artifacts, failures)
        visit(pharmacist, f"{live_server}/staff/orders/{number}", "staff-order", artifacts, failures)

        # The admin: prices, stock with its lots, users and one user's page, the audit log.
        admin = open_page(browser.new_context(viewport={"width": 1280, "height": 900}), problems)
        sign_in(admin, live_server, "admin@example.com", totp_secret=TOTP_SECRET)
        visit(admin, live_server + "/admin/prices", "admin-prices", artifacts, failures)
        visit(admin, f"{live_server}/admin/prices/strengths/{strength_id}", "admin-price-editor",
              artifacts, failures)
        visit(admin, live_server + "/admin/stock", "admin-stock", artifacts, failures)
        visit(admin, f"{live_server}/admin/stock/strengths/{strength_id}", "admin-stock-lots",
              artifacts, failures)
        visit(admin, live_server + "/admin/users", "admin-users", artifacts, failures)
        visit(admin, f"{live_server}/admin/users/{long_user}", "admin-user", artifacts, failures)
        visit(admin, live_server + "/admin/audit", "admin-audit", artifacts, failures)

    assert failures == [], "\n".join(failures)
    assert problems == [], problems
