"""One customer's account journey in a real headless Chromium.

Register (a refused common password first) and open the emailed link, fill in the profile: phone, an allergy, a medication
(then removed), a condition; add a shipping address; sign out; sign in again and be sent back to
the page asked for. Screenshots of the profile (desktop and phone) go to tests/artifacts/.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.helpers import TIMEOUT_MS, chromium, record_problems

EMAIL = "Jo.Tester@Example.com"
NAME = "Jo Tester"
BORN = dt.date(1985, 4, 12)
COMMON_PASSWORD = "password1234"  # refused: too common
PASSPHRASE = "violet canoe drifts past seven lanterns"
PRIVACY_CONSENT = "I have read the notice of privacy practices"


def entries(section: Locator) -> Locator:
    """The texts of a health list (without the visually hidden text of the Remove buttons)."""
    return section.get_by_role("listitem").locator(":scope > span")


def expect_flash(page: Page, text: str) -> None:
    expect(page.get_by_role("status")).to_have_text(text)


def add_entry(page: Page, section_name: str, label: str, text: str) -> Locator:
    """Type into the list's "Add …" field and press Enter; returns the section."""
    section = page.get_by_role("region", name=section_name)
    field = section.get_by_label(label, exact=True)
    field.fill(text)
    field.press("Enter")
    return page.get_by_role("region", name=section_name)


@pytest.mark.browser
def test_register_profile_address_sign_out_and_in_journey(live_server: str, artifacts: Path) -> None:
    problems: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        record_problems(context, problems)
        page = context.new_page()
        header_nav = page.get_by_role("navigation", name="Main")

        # 1. Home page, then Register from the header.
        page.goto(live_server + "/")
        header_nav.get_by_role("link", name="Register").click()
        expect(page).to_have_url(live_server + "/account/register")
        expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")
        expect(header_nav.get_by_role("link", name="Register")).to_have_attribute("aria-current", "page")

        email = page.get_by_label("Email address")
        legal_name = page.get_by_label("Full legal name")
        born = page.get_by_label("Date of birth")
        password = page.get_by_label("Password", exact=True)
        consent = page.get_by_label(PRIVACY_CONSENT)

        # The fields in tab order, typed from the keyboard.
        email.fill(EMAIL)
        email.press("Tab")
        expect(legal_name).to_be_focused()
        page.keyboard.type(NAME)
        born.fill(BORN.isoformat())
        password.fill(COMMON_PASSWORD)
        password.press("Tab")
        # The link to the notice comes first, so it can be read before agreeing to it.
        expect(page.get_by_role("link", name="notice of privacy practices").first).to_be_focused()
        page.keyboard.press("Tab")
        expect(consent).to_be_focused()
        page.keyboard.press("Space")
        expect(consent).to_be_checked()
        page.get_by_role("button", name="Create account").click()

        # 2. The common password is refused beside its field; the other answers are kept.
        expect(page).to_have_url(live_server + "/account/register")
        summary = page.get_by_role("alert")
        expect(summary.get_by_role("heading")).to_have_text("Please correct this:")
        summary_link = summary.get_by_role("link")
        expect(summary_link).to_have_text(re.compile(r"^Password: This password is too common\."))
        expect(summary_link).to_have_attribute("href", "#password")
        expect(password).to_have_attribute("aria-invalid", "true")
        expect(password).to_have_accessible_description(re.compile(r"This password is too common\."))
        expect(page.get_by_text(re.compile(r"^This password is too common\."))).to_be_visible()
        expect(email).to_have_value(EMAIL)
        expect(legal_name).to_have_value(NAME)
        expect(born).to_have_value(BORN.isoformat())
        expect(consent).to_be_checked()
        expect(password).to_have_value("")  # a password is never sent back to the browser

        password.fill(PASSPHRASE)
        page.get_by_role("button", name="Create account").click()

        # 3. The account is made from the emailed link (the development mailbox shows the email).
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
        expect(page.get_by_text("We have sent a message to jo.tester@example.com.")).to_be_visible()
        page.goto(live_server + "/dev/mailbox")
        emailed = page.locator("a[href*='/account/register/']").first.get_attribute("href")
        page.goto(live_server + urlsplit(emailed).path)  # emails link to PUBLIC_URL, not this test server
        expect(page.get_by_role("heading", level=1)).to_have_text("Finish creating your account")
        # The link asks for the password chosen at registration: a wrong one makes nothing.
        confirm_password = page.get_by_label("Password", exact=True)
        confirm_password.fill("not the passphrase chosen")
        page.get_by_role("button", name="Create my account").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Finish creating your account")
        expect(page.get_by_text(re.compile(r"^That is not the password you chose"))).to_be_visible()
        expect(confirm_password).to_have_attribute("aria-invalid", "true")
        confirm_password.fill(PASSPHRASE)
        page.get_by_role("button", name="Create my account").click()

        # The profile: personal details first.
        expect(page).to_have_url(live_server + "/account/profile")
        expect(page.get_by_role("heading", level=1)).to_have_text("Your profile")
        expect_flash(page, "Welcome! Your account is ready.")
        expect(header_nav.get_by_role("button", name="Sign out")).to_be_visible()
        expect(header_nav.get_by_role("link", name="Sign in")).to_have_count(0)
        main = page.get_by_role("main")
        expect(main.get_by_text("Email: jo.tester@example.com")).to_be_visible()  # stored lower-cased
        expect(page.get_by_label("Full legal name")).to_have_value(NAME)
        expect(page.get_by_label("Date of birth")).to_have_value(BORN.isoformat())
        expect(page.get_by_label(PRIVACY_CONSENT)).to_be_checked()

        phone = page.get_by_label("Phone", exact=True)
        expect(phone).to_have_value("")
        phone.fill("(503) 555-0142")
        page.get_by_role("button", name="Save profile").click()
        expect_flash(page, "Your profile is saved.")
        expect(page.get_by_label("Phone", exact=True)).to_have_value("(503) 555-0142")

        # Allergies, medications, conditions: each list has its own Add form.
        for section_name in ("Allergies", "Current medications", "Health conditions"):
            section = page.get_by_role("region", name=section_name)
            expect(section.get_by_text(re.compile("^None recorded"))).to_be_visible()
            expect(entries(section)).to_have_count(0)

        allergies = add_entry(page, "Allergies", "Add allergy", "Penicillin")
        expect(page).to_have_url(live_server + "/account/profile#allergy-list")
        expect_flash(page, "Added to your allergy list.")
        expect(entries(allergies)).to_have_text(["Penicillin"])

        medications = add_entry(
            page, "Current medications", "Add current medication", "Sertraline 50 mg daily"
        )
        expect(page).to_have_url(live_server + "/account/profile#medication-list")
        expect_flash(page, "Added to your current medication list.")
        expect(entries(medications)).to_have_text(["Sertraline 50 mg daily"])

        conditions = add_entry(page, "Health conditions", "Add health condition", "High blood pressure")
        expect(page).to_have_url(live_server + "/account/profile#condition-list")
        expect_flash(page, "Added to your health condition list.")
        expect(entries(conditions)).to_have_text(["High blood pressure"])

        medications.get_by_role("button", name="Remove Sertraline 50 mg daily").click()
        expect_flash(page, "Removed.")
        expect(entries(medications)).to_have_count(0)
        expect(medications.get_by_text(re.compile("^None recorded"))).to_be_visible()
        expect(entries(allergies)).to_have_text(["Penicillin"])
        expect(entries(conditions)).to_have_text(["High blood pressure"])

        # 4. A shipping address; the first one becomes the default.
        main.get_by_role("link", name="Shipping addresses").click()
        expect(page).to_have_url(live_server + "/account/addresses")
        expect(page.get_by_role("heading", level=1)).to_have_text("Shipping addresses")
        expect(main.get_by_text("You have no shipping address yet.")).to_be_visible()
        main.get_by_role("link", name="Add an address").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Add an address")
        expect(page.get_by_label("Recipient")).to_have_value(NAME)  # prefilled with the legal name
        page.get_by_label("Street address").fill("1120 SW 5th Ave")
        page.get_by_label("City").fill("Portland")
        page.get_by_label("State").fill("OR")
        page.get_by_label("ZIP code").fill("97204")
        expect(page.get_by_label("Country")).to_have_value("US")
        page.get_by_role("button", name="Save address").click()
        expect(page).to_have_url(live_server + "/account/addresses")
        expect_flash(page, "Address added.")
        cards = main.get_by_role("listitem")
        expect(cards).to_have_count(1)
        card = cards.first
        expect(card.locator("address")).to_have_text(
            "Jo Tester 1120 SW 5th Ave Portland, OR 97204 US", use_inner_text=True
        )
        expect(card.get_by_text("Default", exact=True)).to_be_visible()
        expect(card.get_by_role("button", name=re.compile("^Make default"))).to_have_count(0)

        # 5. Screenshots of the finished profile, on a desktop and on a phone.
        main.get_by_role("link", name="Back to your profile").click()
        expect(page).to_have_url(live_server + "/account/profile")
        expect(entries(page.get_by_role("region", name="Allergies"))).to_have_text(["Penicillin"])
        page.screenshot(path=artifacts / "account-profile.png", full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        page.screenshot(path=artifacts / "account-profile-phone.png", full_page=True)
        widths = page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
        )
        assert widths["inner"] == 390, widths
        assert widths["scroll"] <= widths["inner"], f"the phone profile page scrolls sideways: {widths}"
        page.set_viewport_size({"width": 1280, "height": 900})

        # 6. Sign out from the header; the profile is then behind the sign-in page.
        header_nav.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(live_server + "/")
        expect_flash(page, "You are signed out.")
        expect(header_nav.get_by_role("link", name="Sign in")).to_be_visible()
        expect(header_nav.get_by_role("button", name="Sign out")).to_have_count(0)
        expect(header_nav.get_by_role("link", name="Your account")).to_have_count(0)

        page.goto(live_server + "/account/profile")
        expect(page).to_have_url(re.compile(re.escape(live_server) + r"/account/sign-in\?.*next="))
        assert parse_qs(urlsplit(page.url).query)["next"] == ["/account/profile"], page.url
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")

        # 7. Sign in again (the email in lower case) and land back on the profile.
        page.get_by_label("Email address").fill(EMAIL.lower())
        sign_in_password = page.get_by_label("Password", exact=True)
        sign_in_password.fill(PASSPHRASE)
        sign_in_password.press("Enter")
        expect(page).to_have_url(live_server + "/account/profile")
        expect(page.get_by_role("heading", level=1)).to_have_text("Your profile")
        expect(header_nav.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.get_by_label("Phone", exact=True)).to_have_value("(503) 555-0142")
        expect(entries(page.get_by_role("region", name="Allergies"))).to_have_text(["Penicillin"])
        expect(entries(page.get_by_role("region", name="Current medications"))).to_have_count(0)
        expect(entries(page.get_by_role("region", name="Health conditions"))).to_have_text(
            ["High blood pressure"]
        )
        context.close()

    # 8. No failed loads, CSP violations or script errors anywhere on the way.
    assert problems == [], "the browser reported errors"
