"""A prescription from upload to approval in a real headless Chromium, with two people at once.

The customer lists a current opioid in their profile, then uploads a photo of a naltrexone
prescription. In a second browser context a pharmacist signs in with a password and a TOTP code,
claims it from the queue, sees the decrypted document and a severe opioid warning, transcribes it
(an NPI with a wrong check digit is refused first, and so is approving without an override reason),
and approves it. The customer then sees it approved with its units left and its expiry date.
Screenshots of the review page and the customer's list go to tests/artifacts/.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.helpers import TIMEOUT_MS, chromium, record_problems
from tests.conftest import TEST_PASSWORD, TOTP_SECRET
from tests.prescriptions.conftest import png_bytes

CUSTOMER_EMAIL = "customer@example.com"
PHARMACIST_EMAIL = "pharmacist@example.com"
PATIENT_NAME = "Customer"  # what make_user gives customer@example.com
PATIENT_BORN = dt.date(1980, 1, 1)
OPIOID = "Oxycodone 5 mg as needed"
NOTE = "Please send 90 tablets at a time."
BAD_NPI = "1234567890"  # the check digit should be 3
GOOD_NPI = "1234567893"
OVERRIDE = (
    "Called the prescriber: the patient stopped oxycodone two weeks ago and has a negative urine "
    "screen; naltrexone is started on purpose. Profile list to be updated."
)


def open_page(browser_context: BrowserContext, problems: list[str]) -> Page:
    browser_context.set_default_timeout(TIMEOUT_MS)
    record_problems(browser_context, problems)
    return browser_context.new_page()


def expect_flash(page: Page, text: str) -> None:
    expect(page.get_by_role("status")).to_have_text(text)


def sign_in(page: Page, live_server: str, email: str, totp_secret: str | None = None) -> None:
    """Through the header's Sign in link; staff also pass the second-factor page."""
    page.goto(live_server + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    if totp_secret is not None:
        expect(page).to_have_url(re.compile(re.escape(live_server) + r"/account/sign-in/verify"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Enter your sign-in code")
        page.get_by_label("Code", exact=True).fill(pyotp.TOTP(totp_secret).now())
        page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(live_server + "/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    expect(page.get_by_role("main").get_by_text(f"Signed in as {email}")).to_be_visible()


def field_error(field: Locator, message: str) -> None:
    """The field is marked invalid and its error, shown beside it, is its accessible description."""
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile(re.escape(message)))
    error_id = field.get_attribute("id") + "-error"
    expect(field.page.locator(f"[id='{error_id}']")).to_have_text(message)


@pytest.mark.browser
def test_upload_claim_review_and_approve_prescription_journey(
    app: Flask, live_server: str, artifacts: Path, tmp_path: Path, users: dict[str, int]
) -> None:
    today = dt.date.today()
    valid_until = today + dt.timedelta(days=app.config["PRESCRIPTION_VALIDITY_DAYS"])
    scan = tmp_path / "prescription.png"
    scan.write_bytes(png_bytes())

    problems: list[str] = []
    with chromium() as browser:
        customer_context = browser.new_context(viewport={"width": 1280, "height": 900})
        customer = open_page(customer_context, problems)
        customer_nav = customer.get_by_role("navigation", name="Main")

        # 1. The customer signs in and lists a current opioid on their profile.
        sign_in(customer, live_server, CUSTOMER_EMAIL)
        customer.get_by_role("main").get_by_role("link", name="Profile and health information").click()
        expect(customer.get_by_role("heading", level=1)).to_have_text("Your profile")
        medications = customer.get_by_role("region", name="Current medications")
        new_medication = medications.get_by_label("Add current medication", exact=True)
        new_medication.fill(OPIOID)
        new_medication.press("Enter")
        expect_flash(customer, "Added to your current medication list.")
        expect(medications.get_by_role("listitem").locator(":scope > span")).to_have_text([OPIOID])

        # 2. Prescriptions -> Upload a prescription: a photo, the medicine and a note.
        customer_nav.get_by_role("link", name="Prescriptions").click()
        expect(customer).to_have_url(live_server + "/prescriptions")
        expect(customer.get_by_role("heading", level=1)).to_have_text("Your prescriptions")
        expect(customer.get_by_text("You have not uploaded a prescription yet.")).to_be_visible()
        customer.get_by_role("link", name="Upload a prescription").click()
        expect(customer.get_by_role("heading", level=1)).to_have_text("Upload a prescription")
        files = customer.get_by_label("Prescription file(s)")
        expect(files).to_have_accessible_description(re.compile(r"^A photo \(JPEG or PNG\) or a PDF"))
        files.set_input_files(scan)
        customer.get_by_label("For which medicine?").select_option(label="Naltrexone")
        customer.get_by_label("Note for our pharmacist").fill(NOTE)
        customer.get_by_role("button", name="Upload prescription").click()

        expect(customer).to_have_url(re.compile(re.escape(live_server) + r"/prescriptions/\d+$"))
        prescription_id = int(customer.url.rsplit("/", 1)[1])
        expect_flash(
            customer,
            "Thank you: your prescription is uploaded. A pharmacist will check it and we will "
            "email you the result.",
        )
        expect(customer.get_by_role("heading", level=1)).to_have_text(
            f"Prescription #{prescription_id} Waiting for review"
        )
        file_link = customer.get_by_role("link", name="Page 1 (prescription.png)")
        expect(file_link).to_be_visible()
        expect(customer.get_by_text(f"Your note: {NOTE}")).to_be_visible()
        # The link serves the decrypted file back to its owner, sandboxed and never cached.
        file_response = customer_context.request.get(live_server + file_link.get_attribute("href"))
        assert file_response.status == 200, file_response.status
        assert file_response.headers["content-type"] == "image/png"
        assert file_response.headers["content-security-policy"] == "sandbox"
        assert file_response.headers["cache-control"] == "no-store"
        assert file_response.body().startswith(b"\x89PNG\r\n\x1a\n")

        customer.get_by_role("navigation", name="Breadcrumb").get_by_role(
            "link", name="Your prescriptions"
        ).click()
        expect(customer.get_by_role("heading", level=1)).to_have_text("Your prescriptions")
        row = customer.get_by_role("row").filter(has=customer.get_by_role("rowheader"))
        expect(row).to_have_count(1)
        expect(row.get_by_role("rowheader")).to_have_text(f"#{prescription_id} Naltrexone")
        expect(row.get_by_role("cell").nth(1)).to_have_text("Waiting for review")
        expect(row.get_by_role("cell").nth(2)).to_have_text("A pharmacist will check it soon.")

        # 3. A pharmacist, in a browser of their own: password, then the second factor.
        pharmacist_context = browser.new_context(viewport={"width": 1280, "height": 900})
        pharmacist = open_page(pharmacist_context, problems)
        sign_in(pharmacist, live_server, PHARMACIST_EMAIL, totp_secret=TOTP_SECRET)
        pharmacist.get_by_role("navigation", name="Main").get_by_role("link", name="Review queue").click()
        expect(pharmacist).to_have_url(live_server + "/pharmacy/queue")
        expect(pharmacist.get_by_role("heading", level=1)).to_have_text("Prescription review queue")
        counts = pharmacist.get_by_role("list", name="Prescriptions by status")
        expect(counts.get_by_role("listitem")).to_have_text(
            ["Waiting: 1", "In review: 0", "Approved: 0", "Rejected: 0"]
        )
        queue_row = pharmacist.get_by_role("row").filter(has_text=f"#{prescription_id}")
        expect(queue_row.get_by_role("rowheader")).to_have_text(f"#{prescription_id} (1 file)")
        cells = queue_row.get_by_role("cell")
        expect(cells.nth(1)).to_have_text(PATIENT_NAME)
        expect(cells.nth(2)).to_have_text("Naltrexone")
        expect(cells.nth(3)).to_have_text("Waiting for review")
        queue_row.get_by_role("button", name=f"Claim prescription {prescription_id}").click()

        expect(pharmacist).to_have_url(f"{live_server}/pharmacy/prescriptions/{prescription_id}")
        expect(pharmacist.get_by_role("heading", level=1)).to_have_text(
            f"Prescription #{prescription_id} Being reviewed"
        )
        # The document comes back decrypted: the image loads at its real size.
        document = pharmacist.get_by_role("region", name="Document")
        image = document.get_by_role("img", name="Prescription file 1")
        expect(image).to_be_visible()
        pharmacist.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [400, 300]
        expect(document.get_by_text(f"Customer's note: {NOTE}")).to_be_visible()

        patient = pharmacist.get_by_role("region", name="Patient (from the account)")
        expect(patient.get_by_role("definition").nth(0)).to_have_text(PATIENT_NAME)
        expect(patient.get_by_role("definition").nth(1)).to_have_text(PATIENT_BORN.strftime("%d %b %Y"))
        expect(patient.get_by_role("definition").nth(4)).to_have_text(OPIOID)

        safety = pharmacist.get_by_role("region", name="Safety checks")
        severe = (
            safety.get_by_role("listitem")
            .filter(has=pharmacist.get_by_text("Severe", exact=True))
            .filter(has_text=re.compile(r"opioid", re.IGNORECASE))
        )
        expect(severe.first).to_be_visible()
        expect(severe.first).to_contain_text(f"Patient lists {OPIOID}.")
        # Severe warnings come first.
        expect(safety.get_by_role("listitem").first.get_by_text("Severe", exact=True)).to_be_visible()

        # 4. The transcription, by label. First with an NPI whose check digit is wrong.
        form = pharmacist.get_by_role("region", name="Transcribe and verify")
        patient_name = form.get_by_label("Patient name", exact=True)
        expect(patient_name).to_have_value(PATIENT_NAME)  # prefilled from the account
        patient_name.fill(PATIENT_NAME)
        form.get_by_label("Patient date of birth", exact=True).fill(PATIENT_BORN.isoformat())
        drug, strength = form.get_by_label("Drug", exact=True), form.get_by_label("Strength and form", exact=True)
        # The strength list follows the drug at once (static/js/review-strengths.js).
        drug.select_option(label="Acamprosate")
        expect(strength.locator("option")).to_have_text(["Choose…", "333 mg delayed-release tablet"])
        drug.select_option(label="Naltrexone")
        expect(strength.locator("option")).to_have_text([
            "Choose…", "50 mg film-coated tablet", "1.5 mg compounded capsule", "3 mg compounded capsule",
            "4.5 mg compounded capsule"])
        strength.select_option(label="50 mg film-coated tablet")
        form.get_by_label("Quantity per fill (units)", exact=True).fill("90")
        form.get_by_label("Refills", exact=True).fill("1")
        form.get_by_label("Units a day", exact=True).fill("1")
        form.get_by_label("Directions", exact=True).fill("Take one tablet by mouth once a day.")
        form.get_by_label("Prescriber name", exact=True).fill("Dr Ana Prescott")
        form.get_by_label("Prescriber address", exact=True).fill("1200 NW Everett St, Portland, OR 97209")
        form.get_by_label("Prescriber phone", exact=True).fill("(503) 555-0199")
        form.get_by_label("Prescriber NPI", exact=True).fill(BAD_NPI)
        form.get_by_role("button", name="Approve prescription").click()

        expect(pharmacist).to_have_url(f"{live_server}/pharmacy/prescriptions/{prescription_id}/approve")
        form = pharmacist.get_by_role("region", name="Transcribe and verify")
        summary = form.get_by_role("alert")
        expect(summary.get_by_role("heading")).to_have_text("Please correct these:")
        expect(summary.get_by_role("link", name=re.compile(r"^Prescriber NPI: "))).to_have_attribute(
            "href", "#prescriber_npi"
        )
        npi = form.get_by_label("Prescriber NPI", exact=True)
        field_error(npi, "The NPI must be 10 digits with a valid check digit.")
        expect(npi).to_have_value(BAD_NPI)
        override = form.get_by_label("Why it is safe to approve despite a severe warning", exact=True)
        field_error(override, "There is a severe warning: write why it is safe to approve.")
        # What was typed is kept.
        expect(form.get_by_label("Quantity per fill (units)", exact=True)).to_have_value("90")
        expect(form.get_by_label("Strength and form", exact=True)).to_have_value(re.compile(r"^\d+$"))
        expect(form.get_by_label("Prescriber name", exact=True)).to_have_value("Dr Ana Prescott")
        expect(pharmacist.get_by_role("heading", level=1)).to_have_text(
            f"Prescription #{prescription_id} Being reviewed"
        )

        npi.fill(GOOD_NPI)
        form.get_by_label("Verified with the prescriber by", exact=True).select_option(
            label="Phone call with the prescriber's office"
        )
        form.get_by_label("Person spoken to", exact=True).fill("Sam Rivera, nurse")
        form.get_by_label("Date written", exact=True).fill(today.isoformat())
        override.fill(OVERRIDE)
        # The re-rendered page shows the document again, loaded, for the screenshot.
        expect(image).to_be_visible()
        pharmacist.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
        )
        pharmacist.evaluate("window.scrollTo(0, 0)")  # the document column is sticky
        pharmacist.screenshot(path=artifacts / "pharmacist-review.png", full_page=True)
        form.get_by_role("button", name="Approve prescription").click()

        expect(pharmacist).to_have_url(live_server + "/pharmacy/queue")
        expect_flash(pharmacist, f"Prescription #{prescription_id} is approved; the customer is notified.")
        expect(pharmacist.get_by_role("row").filter(has_text=f"#{prescription_id}")).to_have_count(0)
        expect(pharmacist.get_by_text("Nothing is waiting. Well done.")).to_be_visible()
        expect(counts.get_by_role("listitem")).to_have_text(
            ["Waiting: 0", "In review: 0", "Approved: 1", "Rejected: 0"]
        )

        # 5. The customer's list, reloaded: approved, with units left and the expiry date.
        customer.reload()
        expect(customer.get_by_role("heading", level=1)).to_have_text("Your prescriptions")
        row = customer.get_by_role("row").filter(has=customer.get_by_role("rowheader"))
        expect(row).to_have_count(1)
        expect(row.get_by_role("cell").nth(1)).to_have_text("Approved")
        expect(row.get_by_role("cell").nth(2)).to_have_text(
            "Naltrexone 50 mg film-coated tablet: 180 units left, valid until "
            + valid_until.strftime("%d %b %Y")
        )
        customer.screenshot(path=artifacts / "customer-prescriptions.png", full_page=True)

        pharmacist_context.close()
        customer_context.close()

    # 6. No failed loads, CSP violations or script errors in either browser. The one exception:
    # Chromium logs the refused approval's 422 answer (a page with the errors) as a failed load.
    refused_approval = re.compile(
        r"status of 422 .*'url': '"
        + re.escape(f"{live_server}/pharmacy/prescriptions/{prescription_id}/approve'")
    )
    assert len([p for p in problems if refused_approval.search(p)]) == 1, problems
    assert [p for p in problems if not refused_approval.search(p)] == [], "the browser reported errors"
