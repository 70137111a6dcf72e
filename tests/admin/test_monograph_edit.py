"""Admin monograph editing through the pages: a new monograph, its details, its uses, dosing rows and
questions (added, edited, moved, removed) as the public page and the pharmacist's dose check see them,
refusals per field, and two admins saving (or removing) the same monograph, section, safety entry, dosing
row, use or question at once."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import ProfileEntry, User
from shop.admin.monograph_edit import SECTION_TITLES
from shop.audit import AuditEvent
from shop.catalog.models import (
    SECTION_KEYS,
    SEVERITIES,
    DosingRow,
    FaqEntry,
    Monograph,
    MonographSection,
    MonographUse,
    Product,
    SafetyEntry,
)
from shop.extensions import db
from shop.prescriptions.safety import dose_warnings, profile_warnings
from tests.admin.test_catalog_edit import (
    BASE,
    NEW_STRENGTH,
    Admin,
    audit_actions,
    create_product,
    field_error,
    flashes,
    monograph_id,
    removal_version,
    second_admin,
    text_of,
    version_in,
)

NEW_MONOGRAPH = {"title": "Topiramate", "slug": "", "drug_name": "topiramate", "drug_class": "Anticonvulsant",
                 "summary": "An epilepsy medicine also prescribed off-label in alcohol use disorder.",
                 "last_reviewed": "2025-05-06", "reviewed_by": "Dana Reyes, PharmD"}
NEW_USE = {"name": "Alcohol use disorder", "approved": "off_label", "evidence": "moderate",
           "note": "Several randomised trials; not approved for this use."}
NEW_DOSE = {"indication": "Alcohol use disorder", "dose": "25 mg rising to 150 mg", "frequency": "Twice daily",
            "timing": "Morning and evening", "duration": "12 weeks, then review", "off_label": "y",
            "min_daily_mg": "50", "max_daily_mg": "300"}


@pytest.fixture
def admin(signed_in: Callable[[str], FlaskClient]) -> Admin:
    return Admin(signed_in("admin"))


def public_section(client: FlaskClient, slug: str, key: str) -> str:
    page = client.get(f"/monographs/{slug}").get_data(as_text=True)
    return page.split(f'<section id="{key}"')[1].split("</section>")[0]


def counts(app: Flask) -> tuple[int, ...]:
    with app.app_context():
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                     for model in (Monograph, MonographSection, MonographUse, DosingRow, FaqEntry, AuditEvent))


def row_ids(app: Flask, model: type, mid: int) -> list[int]:
    """Rows of a monograph in their public order."""
    with app.app_context():
        return list(db.session.scalars(sa.select(model.id).where(model.monograph_id == mid)
                                       .order_by(model.position, model.id)))


def create_monograph(admin: Admin, **changes: str) -> int:
    response = admin.post(f"{BASE}/monographs/new", {**NEW_MONOGRAPH, **changes})
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


# A new monograph -----------------------------------------------------------------------------------


def test_a_new_monograph_has_every_section_to_write_and_a_product_links_to_it(
    app: Flask, admin: Admin, client: FlaskClient
) -> None:
    mid = create_monograph(admin)
    with app.app_context():
        monograph = db.session.get(Monograph, mid)
        assert (monograph.slug, monograph.last_reviewed, monograph.version) == (
            "topiramate", dt.date(2025, 5, 6), 1)
        assert [(s.key, s.title, s.body_markdown) for s in monograph.sections] == [
            (key, SECTION_TITLES[key], "") for key in SECTION_KEYS]
    assert audit_actions(app)[-1] == "monograph.created"
    editor = admin.get(f"{BASE}/monographs/{mid}")
    assert "0 of 11 sections written" in text_of(editor)
    assert "Topiramate" in text_of(admin.get(f"{BASE}/monographs"))

    public = text_of(client.get("/monographs/topiramate").get_data(as_text=True))
    assert "An epilepsy medicine also prescribed off-label" in public
    assert "Last reviewed 6 May 2025 by Dana Reyes, PharmD." in public
    # Unwritten sections are not shown as bare headings.
    assert 'id="mechanism-title"' not in client.get("/monographs/topiramate").get_data(as_text=True)

    written = admin.post(f"{BASE}/monographs/{mid}/sections/overview", {
        "s-overview-title": "Overview", "s-overview-body": "Topiramate **calms nerve signals**.",
        "s-overview-version": version_in(editor, "s-overview-version"), "action": "save"})
    assert written.status_code == 302
    assert "<strong>calms nerve signals</strong>" in public_section(client, "topiramate", "overview")
    assert "1 of 11 sections written" in text_of(admin.get(f"{BASE}/monographs/{mid}"))
    assert 'id="overview-title"' in client.get("/monographs/topiramate").get_data(as_text=True)

    # Linking a product to it is done on the product form; both pages then link to each other.
    pid = create_product(app, admin, monograph_id=str(mid))
    admin.post(f"{BASE}/products/{pid}/strengths/new", NEW_STRENGTH)
    assert admin.post(f"{BASE}/products/{pid}/activate").status_code == 302
    assert 'href="/monographs/topiramate"' in client.get("/products/topiramate").get_data(as_text=True)
    public = client.get("/monographs/topiramate").get_data(as_text=True)
    assert 'href="/products/topiramate"' in public.split('class="notice monograph-products"')[1]


@pytest.mark.parametrize(("changes", "field_id", "message"), [
    ({"title": "  "}, "title", "Enter the title"),
    ({"slug": "naltrexone"}, "slug", "The Naltrexone monograph already uses the slug 'naltrexone'"),
    ({"slug": "Top Dose!"}, "slug", "lower-case letters, digits"),
    ({"drug_class": ""}, "drug_class", "Enter the drug class"),
    ({"summary": ""}, "summary", "Enter a summary"),
    ({"last_reviewed": "2999-01-01"}, "last_reviewed", "cannot be in the future"),
    ({"last_reviewed": ""}, "last_reviewed", "Enter the date of the review."),
    ({"reviewed_by": ""}, "reviewed_by", "Enter the reviewer's name"),
])
def test_a_new_monograph_with_bad_input_is_refused_beside_its_field(
    app: Flask, admin: Admin, changes: dict[str, str], field_id: str, message: str
) -> None:
    before = counts(app)
    response = admin.post(f"{BASE}/monographs/new", {**NEW_MONOGRAPH, **changes})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in field_error(page, field_id)
    assert 'class="error-summary"' in page and f'href="#{field_id}"' in page
    if field_id != "summary":
        assert "An epilepsy medicine also prescribed off-label" in page  # what was typed stays in the form
    assert counts(app) == before


def test_details_show_on_the_public_page(app: Flask, admin: Admin, client: FlaskClient) -> None:
    mid = monograph_id(app, "acamprosate")
    editor = admin.get(f"{BASE}/monographs/{mid}")
    response = admin.post(f"{BASE}/monographs/{mid}/details", {
        "details-title": "Acamprosate calcium", "details-drug_name": "acamprosate calcium",
        "details-drug_class": "GABA analogue", "details-summary": "Helps people stay alcohol-free.",
        "details-version": version_in(editor, "details-version")})
    assert response.status_code == 302
    public = text_of(client.get("/monographs/acamprosate").get_data(as_text=True))
    assert "Acamprosate calcium acamprosate calcium · GABA analogue Helps people stay alcohol-free." in public
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "monograph.details_updated")).one()
        assert event.details_dict["changes"]["drug_class"][1] == "GABA analogue"
        assert event.details_dict["changes"]["summary"] == ["…", "…"]


# Uses -----------------------------------------------------------------------------------------------


def test_uses_are_added_edited_moved_and_removed_and_off_label_ones_stay_marked(
    app: Flask, admin: Admin, client: FlaskClient
) -> None:
    mid = monograph_id(app, "thiamine")
    new_use = admin.get(f"{BASE}/monographs/{mid}/uses/new?approved=off_label")
    assert '<input checked id="approved-1" name="approved" type="radio" value="off_label">' in new_use

    assert admin.post(f"{BASE}/monographs/{mid}/uses/new", NEW_USE).status_code == 302
    approved = {**NEW_USE, "name": "Beriberi", "approved": "approved", "evidence": "strong", "note": ""}
    assert admin.post(f"{BASE}/monographs/{mid}/uses/new", approved).status_code == 302

    def row_of(key: str, name: str) -> str:
        section = public_section(client, "thiamine", key)
        rows = [row.split("</tr>")[0] for row in section.split("<tr>") if name in row]
        return text_of(rows[0]) if rows else ""

    assert row_of("off_label_uses", "Alcohol use disorder").startswith("Alcohol use disorder Off-label Moderate")
    assert row_of("approved_uses", "Beriberi") == "Beriberi Strong"
    assert row_of("approved_uses", "Alcohol use disorder") == ""

    uses = row_ids(app, MonographUse, mid)
    beriberi = uses[-1]
    # Made off-label: it moves to the off-label table, marked as such, and no longer counts as approved.
    form = admin.get(f"{BASE}/monographs/{mid}/uses/{beriberi}")
    changed = admin.post(f"{BASE}/monographs/{mid}/uses/{beriberi}",
                         {**approved, "approved": "off_label", "version": version_in(form)})
    assert changed.status_code == 302 and changed.headers["Location"].endswith("#uses-off-label")
    assert row_of("approved_uses", "Beriberi") == ""
    assert row_of("off_label_uses", "Beriberi").startswith("Beriberi Off-label Strong")

    def off_label_order() -> list[str]:
        section = public_section(client, "thiamine", "off_label_uses")
        return [text_of(row.split("</tr>")[0]).split(" Off-label")[0] for row in section.split("<tr>")[2:]]

    order = off_label_order()
    assert order[-2:] == ["Alcohol use disorder", "Beriberi"]
    assert admin.post(f"{BASE}/monographs/{mid}/uses/{beriberi}/move", {"direction": "up"}).status_code == 302
    assert off_label_order() == [*order[:-2], "Beriberi", "Alcohol use disorder"]
    back = admin.post(f"{BASE}/monographs/{mid}/uses/{beriberi}/move", {"direction": "down"}, follow=True)
    assert off_label_order() == order
    assert "'Beriberi' moved down." in flashes(back.get_data(as_text=True))

    remove = f"{BASE}/monographs/{mid}/uses/{beriberi}/remove"
    editor = admin.get(f"{BASE}/monographs/{mid}")
    assert removal_version(editor, remove) == {"version": "2"}  # saved once; the moves left it alone
    assert admin.post(remove, removal_version(editor, remove)).status_code == 302
    assert "Beriberi" not in client.get("/monographs/thiamine").get_data(as_text=True)
    assert [a for a in audit_actions(app) if a.startswith("monograph.")] == [
        "monograph.use_added", "monograph.use_added", "monograph.use_updated", "monograph.use_moved",
        "monograph.use_moved", "monograph.use_removed"]


def test_moving_the_first_row_up_changes_nothing(app: Flask, admin: Admin) -> None:
    mid = monograph_id(app, "naltrexone")
    first = row_ids(app, FaqEntry, mid)[0]
    before = row_ids(app, FaqEntry, mid)
    page = admin.post(f"{BASE}/monographs/{mid}/faq/{first}/move", {"direction": "up"}, follow=True)
    assert "is already first" in flashes(page.get_data(as_text=True))
    assert row_ids(app, FaqEntry, mid) == before
    assert admin.post(f"{BASE}/monographs/{mid}/faq/{first}/move", {"direction": "sideways"}).status_code == 400
    assert not [a for a in audit_actions(app) if a.startswith("monograph.")]


def test_a_row_of_another_monograph_is_not_found(app: Flask, admin: Admin) -> None:
    other = row_ids(app, MonographUse, monograph_id(app, "naltrexone"))[0]
    mid = monograph_id(app, "thiamine")
    assert admin.client.get(f"{BASE}/monographs/{mid}/uses/{other}").status_code == 404
    for action, data in (("", NEW_USE), ("/remove", {}), ("/move", {"direction": "down"})):
        assert admin.post(f"{BASE}/monographs/{mid}/uses/{other}{action}", data).status_code == 404
    assert admin.client.get(f"{BASE}/monographs/{mid}/faq/{other}").status_code == 404  # a use id is no question
    assert not [a for a in audit_actions(app) if a.startswith("monograph.")]


# Dosing rows ----------------------------------------------------------------------------------------


def test_a_dosing_row_shows_on_the_public_page_and_sets_the_pharmacists_dose_check(
    app: Flask, admin: Admin, client: FlaskClient
) -> None:
    mid = create_monograph(admin)
    pid = create_product(app, admin, monograph_id=str(mid))
    admin.post(f"{BASE}/products/{pid}/strengths/new", NEW_STRENGTH)  # 25 mg tablets
    added = admin.post(f"{BASE}/monographs/{mid}/dosing/new", NEW_DOSE)
    assert added.status_code == 302 and added.headers["Location"].endswith("#dosing-rows")

    table = public_section(client, "topiramate", "dosing")
    assert "Alcohol use disorder <span class=\"badge badge-offlabel\">Off-label</span>" in table
    assert "25 mg rising to 150 mg" in text_of(table) and "12 weeks, then review" in text_of(table)

    def warnings(tablets_a_day: str) -> list[str]:
        with app.app_context():
            product = db.session.get(Product, pid)
            return [w.detail for w in dose_warnings(product, product.strengths[0], Decimal(tablets_a_day))]

    assert warnings("2") == []  # 50 mg a day is within 50-300
    assert warnings("1") == ["25 mg a day (1 × 25 mg); the monograph's usual daily doses are 50–300 mg."]

    [row] = row_ids(app, DosingRow, mid)
    form = admin.get(f"{BASE}/monographs/{mid}/dosing/{row}")
    assert 'value="50"' in form and 'value="300"' in form  # not 50.000 or 3E+2
    lowered = admin.post(f"{BASE}/monographs/{mid}/dosing/{row}",
                         {**NEW_DOSE, "min_daily_mg": "25", "version": version_in(form)})
    assert lowered.status_code == 302
    assert warnings("1") == []
    with app.app_context():
        saved = db.session.get(DosingRow, row)
        assert (saved.min_daily_mg, saved.max_daily_mg, saved.off_label) == (Decimal("25"), Decimal("300"), True)


@pytest.mark.parametrize(("changes", "field_id", "message"), [
    ({"min_daily_mg": "300", "max_daily_mg": "50"}, "max_daily_mg", "cannot be below the lowest"),
    ({"max_daily_mg": ""}, "max_daily_mg", "Enter both the lowest and the highest usual daily dose, or neither."),
    ({"min_daily_mg": ""}, "min_daily_mg", "Enter both the lowest and the highest usual daily dose, or neither."),
    ({"min_daily_mg": "1.2345"}, "min_daily_mg", "At most three decimals."),
    ({"min_daily_mg": "0"}, "min_daily_mg", "more than zero"),
    ({"max_daily_mg": "lots"}, "max_daily_mg", "Enter a number such as 2 or 1.5."),
    ({"indication": ""}, "indication", "Enter what the dose is for"),
    ({"dose": ""}, "dose", "Enter the dose"),
])
def test_a_bad_dosing_row_is_refused_beside_its_field(
    app: Flask, admin: Admin, changes: dict[str, str], field_id: str, message: str
) -> None:
    mid = monograph_id(app, "naltrexone")
    before = counts(app)
    response = admin.post(f"{BASE}/monographs/{mid}/dosing/new", {**NEW_DOSE, **changes})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in field_error(page, field_id)
    assert f'href="#{field_id}"' in page
    assert "12 weeks, then review" in page  # what was typed stays in the form
    assert counts(app) == before


@pytest.mark.parametrize(("kind", "data", "field_id", "message"), [
    ("uses", {**NEW_USE, "approved": ""}, "approved", "Choose approved or off-label."),
    ("uses", {**NEW_USE, "evidence": "anecdotal"}, "evidence", "Choose the strength of the evidence"),
    ("uses", {**NEW_USE, "name": ""}, "name", "Enter the use"),
    ("faq", {"question": "", "answer": "Yes."}, "question", "Enter the question."),
    ("faq", {"question": "Can I drink?", "answer": "  "}, "answer", "Enter the answer."),
])
def test_a_bad_use_or_question_is_refused_beside_its_field(
    app: Flask, admin: Admin, kind: str, data: dict[str, str], field_id: str, message: str
) -> None:
    mid = monograph_id(app, "naltrexone")
    before = counts(app)
    response = admin.post(f"{BASE}/monographs/{mid}/{kind}/new", data)
    assert response.status_code == 422
    assert message in field_error(response.get_data(as_text=True), field_id)
    assert counts(app) == before


# Questions ------------------------------------------------------------------------------------------


def test_a_question_is_previewed_sanitised_then_saved_edited_and_moved(
    app: Flask, admin: Admin, client: FlaskClient
) -> None:
    mid = monograph_id(app, "acamprosate")
    answer = "<script>alert(1)</script>\n\n**No**, not [while taking it](javascript:alert(1))."
    data = {"question": "Can I drink alcohol while taking it?", "answer": answer}

    preview = admin.post(f"{BASE}/monographs/{mid}/faq/new", {**data, "action": "preview"})
    assert preview.status_code == 200
    shown = preview.get_data(as_text=True).split('id="preview-answer"')[1].split("</section>")[0]
    assert "<strong>No</strong>" in shown and "&lt;script&gt;" in shown
    assert "<script" not in shown and 'href="javascript:' not in shown
    assert "Can I drink alcohol" not in client.get("/monographs/acamprosate").get_data(as_text=True)

    assert admin.post(f"{BASE}/monographs/{mid}/faq/new", {**data, "action": "save"}).status_code == 302
    faq = client.get("/monographs/acamprosate").get_data(as_text=True).split('id="faq"')[1]
    entry = faq.split("Can I drink alcohol while taking it?")[1].split("</details>")[0]
    assert "<strong>No</strong>" in entry and "<script" not in entry and 'href="javascript:' not in entry

    new = row_ids(app, FaqEntry, mid)[-1]
    form = admin.get(f"{BASE}/monographs/{mid}/faq/{new}")
    assert "Can I drink alcohol while taking it?" in form
    edited = admin.post(f"{BASE}/monographs/{mid}/faq/{new}", {"question": "Can I drink alcohol?",
                                                              "answer": "Better not.",
                                                              "version": version_in(form)})
    assert edited.status_code == 302 and edited.headers["Location"].endswith("#faq")
    assert admin.post(f"{BASE}/monographs/{mid}/faq/{new}/move", {"direction": "up"}).status_code == 302
    questions = [part.split("</summary>")[0] for part in client.get("/monographs/acamprosate").get_data(
        as_text=True).split("<summary>")[1:]]
    assert questions[-2] == "Can I drink alcohol?"
    with app.app_context():
        assert db.session.get(FaqEntry, new).answer_markdown == "Better not."
    assert [a for a in audit_actions(app) if a.startswith("monograph.")] == [
        "monograph.faq_added", "monograph.faq_updated", "monograph.faq_moved"]


# Two admins at once ---------------------------------------------------------------------------------


def test_the_second_admin_saving_a_section_is_told_and_keeps_their_text(
    app: Flask, admin: Admin, make_user: Callable[..., int], client: FlaskClient
) -> None:
    other = second_admin(app, make_user)
    mid = monograph_id(app, "naltrexone")
    url = f"{BASE}/monographs/{mid}/sections/side_effects"
    first_page, second_page = admin.get(f"{BASE}/monographs/{mid}"), other.get(f"{BASE}/monographs/{mid}")
    read_at = version_in(second_page, "s-side_effects-version")

    first = {"s-side_effects-title": "Side effects", "s-side_effects-body": "Nausea is the most common.",
             "s-side_effects-version": version_in(first_page, "s-side_effects-version"), "action": "save"}
    assert admin.post(url, first).status_code == 302

    second = {"s-side_effects-title": "Possible side effects", "s-side_effects-body": "Headache, mostly.",
              "s-side_effects-version": read_at, "action": "save"}
    response = other.post(url, second)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "This section was changed by someone else meanwhile" in flashes(page)
    assert "saved now: “Nausea is the most common.”" in field_error(page, "s-side_effects-body")
    assert "Headache, mostly." in page and 'value="Possible side effects"' in page  # their text is kept
    assert "Nausea is the most common." in page.split('id="stored-side_effects"')[1]  # beside the winner's
    with app.app_context():
        stored = db.session.scalars(sa.select(MonographSection).where(
            MonographSection.monograph_id == mid, MonographSection.key == "side_effects")).one()
        assert (stored.title, stored.body_markdown, stored.version) == (
            "Side effects", "Nausea is the most common.", 2)
    assert audit_actions(app).count("monograph.section_updated") == 1

    # The 409 page carries the version now: saving from it replaces the first admin's text on purpose.
    assert version_in(page, "s-side_effects-version") == "2"
    assert other.post(url, {**second, "s-side_effects-version": "2"}).status_code == 302
    assert "Headache, mostly." in public_section(client, "naltrexone", "side_effects")


def test_the_second_admin_saving_the_details_gets_409_and_nothing_changes(
    app: Flask, admin: Admin, make_user: Callable[..., int]
) -> None:
    other = second_admin(app, make_user)
    mid = monograph_id(app, "disulfiram")
    first_page, second_page = admin.get(f"{BASE}/monographs/{mid}"), other.get(f"{BASE}/monographs/{mid}")
    details = {"details-title": "Disulfiram", "details-drug_name": "disulfiram",
               "details-drug_class": "Aldehyde dehydrogenase inhibitor", "details-summary": "Short."}
    assert admin.post(f"{BASE}/monographs/{mid}/details", {
        **details, "details-version": version_in(first_page, "details-version")}).status_code == 302
    response = other.post(f"{BASE}/monographs/{mid}/details", {
        **details, "details-summary": "Longer.", "details-version": version_in(second_page, "details-version")})
    assert response.status_code == 409
    assert "saved now: “Short.”" in field_error(response.get_data(as_text=True), "details-summary")
    with app.app_context():
        assert db.session.get(Monograph, mid).summary == "Short."


def test_a_save_without_the_version_it_was_read_at_is_refused(app: Flask, admin: Admin) -> None:
    mid = monograph_id(app, "naltrexone")
    response = admin.post(f"{BASE}/monographs/{mid}/sections/overview", {
        "s-overview-title": "Overview", "s-overview-body": "New.", "action": "save"})
    assert response.status_code == 400
    for bogus in ("99999999999999999999", "-1", "x"):  # beyond the column, or not a version at all
        response = admin.post(f"{BASE}/monographs/{mid}/sections/overview", {
            "s-overview-title": "Overview", "s-overview-body": "New.", "s-overview-version": bogus,
            "action": "save"})
        assert response.status_code == 400, bogus
    assert not [a for a in audit_actions(app) if a.startswith("monograph.")]


def test_simultaneous_saves_of_one_section_keep_exactly_one(
    app: Flask, make_user: Callable[..., int]
) -> None:
    editors = [second_admin(app, make_user, f"admin{n}@example.com") for n in range(4)]
    mid = monograph_id(app, "naltrexone")
    url = f"{BASE}/monographs/{mid}/sections/evidence"
    start = threading.Barrier(len(editors))
    outcomes: dict[int, int] = {}

    def save(n: int) -> None:
        data = {"s-evidence-title": "Evidence", "s-evidence-body": f"Text of editor {n}.",
                "s-evidence-version": "1", "action": "save"}
        start.wait()
        outcomes[n] = editors[n].post(url, data).status_code

    threads = [threading.Thread(target=save, args=(n,)) for n in range(len(editors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [n for n, status in outcomes.items() if status == 302]
    assert len(outcomes) == len(editors) and len(winners) == 1
    assert sorted(outcomes.values()) == [302, 409, 409, 409]
    with app.app_context():
        stored = db.session.scalars(sa.select(MonographSection).where(
            MonographSection.monograph_id == mid, MonographSection.key == "evidence")).one()
        assert (stored.body_markdown, stored.version) == (f"Text of editor {winners[0]}.", 2)
    assert audit_actions(app).count("monograph.section_updated") == 1


# Two admins editing one safety entry, dosing row, use or question ------------------------------------


def safety_entry(app: Flask, term: str) -> SafetyEntry:
    with app.app_context():
        return db.session.scalars(sa.select(SafetyEntry).where(
            SafetyEntry.monograph_id == monograph_id(app, "naltrexone"), SafetyEntry.term == term)).one()


def dosing_row(app: Flask, indication: str) -> DosingRow:
    with app.app_context():
        return db.session.scalars(sa.select(DosingRow).where(
            DosingRow.monograph_id == monograph_id(app, "naltrexone"), DosingRow.indication == indication)).one()


PREGNANCY = {"kind": "contraindication", "term": "Pregnancy", "severity": "moderate",
             "match_terms": "pregnancy\npregnant", "note": "Weigh the risks with the prescriber."}
ALCOHOL_DOSE = {**{k: v for k, v in NEW_DOSE.items() if k != "off_label"}, "indication": "Alcohol dependence",
                "dose": "50 mg", "frequency": "Once daily", "min_daily_mg": "25", "max_daily_mg": "100"}


def test_a_stale_save_of_a_safety_entry_gets_409_and_the_safety_check_uses_the_first(
    app: Flask, admin: Admin, make_user: Callable[..., int], users: dict[str, int]
) -> None:
    other = second_admin(app, make_user)
    mid, entry = monograph_id(app, "naltrexone"), safety_entry(app, "Pregnancy").id
    url = f"{BASE}/monographs/{mid}/safety/{entry}"
    first_form, second_form = admin.get(url), other.get(url)
    with app.app_context():
        db.session.add(ProfileEntry(user_id=users["customer"], kind="condition", text="Breastfeeding"))
        db.session.commit()

    def pharmacists_warnings() -> list[tuple[str, str, str]]:
        with app.app_context():
            patient = db.session.get(User, users["customer"])
            product = db.session.scalars(sa.select(Product).where(Product.slug == "naltrexone")).one()
            return [(w.severity, w.title, w.detail.split(".")[0]) for w in profile_warnings(patient, product)]

    assert pharmacists_warnings() == []
    first = {**PREGNANCY, "severity": "severe", "match_terms": "pregnancy\npregnant\nbreastfeeding",
             "version": version_in(first_form)}
    assert admin.post(url, first).status_code == 302

    second = {**PREGNANCY, "severity": "minor", "note": "Usually fine.", "version": version_in(second_form)}
    response = other.post(url, second)
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "This safety entry was changed by someone else meanwhile" in flashes(page)
    assert field_error(page, "severity") == "Changed by someone else meanwhile; saved now: “Severe”."
    assert field_error(page, "match_terms") == (
        "Changed by someone else meanwhile; saved now: “pregnancy, pregnant, breastfeeding”.")
    assert field_error(page, "note") == (
        "Changed by someone else meanwhile; saved now: “Weigh the risks with the prescriber.”.")
    assert '<option selected value="minor">' in page and "Usually fine." in page  # their values are kept
    assert version_in(page) == "2"  # saving again from here replaces the first's values on purpose

    with app.app_context():
        stored = db.session.get(SafetyEntry, entry)
        assert (stored.severity, stored.match_list, stored.note, stored.version) == (
            "severe", ["pregnancy", "pregnant", "breastfeeding"], PREGNANCY["note"], 2)
    assert audit_actions(app).count("monograph.safety_updated") == 1
    assert pharmacists_warnings() == [("severe", "Contraindication: Pregnancy", "Patient lists Breastfeeding")]


def test_a_stale_save_of_a_dosing_row_gets_409_and_the_dose_check_uses_the_first(
    app: Flask, admin: Admin, make_user: Callable[..., int]
) -> None:
    other = second_admin(app, make_user)
    mid, row = monograph_id(app, "naltrexone"), dosing_row(app, "Alcohol dependence").id
    url = f"{BASE}/monographs/{mid}/dosing/{row}"
    first_form, second_form = admin.get(url), other.get(url)

    def dose_check(tablets_a_day: str) -> list[str]:
        with app.app_context():
            product = db.session.scalars(sa.select(Product).where(Product.slug == "naltrexone")).one()
            strength = next(s for s in product.strengths if s.slug == "50-mg")
            return [w.title for w in dose_warnings(product, strength, Decimal(tablets_a_day))]

    assert dose_check("3") == ["Dose outside the usual range"]  # 150 mg a day: above every 25-100 mg row
    assert admin.post(url, {**ALCOHOL_DOSE, "max_daily_mg": "150",
                            "version": version_in(first_form)}).status_code == 302

    response = other.post(url, {**ALCOHOL_DOSE, "max_daily_mg": "120", "duration": "Six months",
                                "version": version_in(second_form)})
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "This dosing row was changed by someone else meanwhile" in flashes(page)
    assert field_error(page, "max_daily_mg") == "Changed by someone else meanwhile; saved now: “150 mg”."
    assert 'value="120"' in page and 'value="Six months"' in page  # what they typed stays
    with app.app_context():
        stored = db.session.get(DosingRow, row)
        assert (stored.min_daily_mg, stored.max_daily_mg, stored.duration, stored.version) == (
            Decimal("25"), Decimal("150"), NEW_DOSE["duration"], 2)
    assert audit_actions(app).count("monograph.dosing_updated") == 1
    assert dose_check("3") == []  # the first admin's 25-150 mg, not the second's 25-120 mg
    assert dose_check("2.6") == []  # 130 mg: the second's range would have flagged it


ROW_MODELS = {"uses": (MonographUse, "monograph.use_updated"), "faq": (FaqEntry, "monograph.faq_updated")}


@pytest.mark.parametrize(("kind", "data", "first", "second", "field_id", "message"), [
    ("uses", {"name": "Alcohol dependence", "approved": "approved", "evidence": "strong", "note": ""},
     {"approved": "off_label"}, {"note": "Two large trials."}, "approved", "saved now: off-label."),
    ("faq", {"question": "Can I drink?", "answer": "No."},
     {"answer": "Better not: it adds to the liver's load."}, {"answer": "Never."}, "answer",
     "saved now: “Better not: it adds to the liver's load.”"),
])
def test_a_stale_save_of_a_use_or_question_gets_409_beside_its_field(
    app: Flask, admin: Admin, make_user: Callable[..., int], kind: str, data: dict[str, str],
    first: dict[str, str], second: dict[str, str], field_id: str, message: str
) -> None:
    other = second_admin(app, make_user)
    mid = monograph_id(app, "naltrexone")
    model, updated = ROW_MODELS[kind]
    assert admin.post(f"{BASE}/monographs/{mid}/{kind}/new", data).status_code == 302
    url = f"{BASE}/monographs/{mid}/{kind}/{row_ids(app, model, mid)[-1]}"
    first_form, second_form = admin.get(url), other.get(url)
    assert admin.post(url, {**data, **first, "version": version_in(first_form)}).status_code == 302
    response = other.post(url, {**data, **second, "version": version_in(second_form)})
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert message in field_error(page, field_id)
    if kind == "faq":  # the stored answer shows beside the form, as the public page renders it
        assert "Saved by someone else meanwhile" in page.split('id="stored-answer"')[1].split("</section>")[0]
    assert audit_actions(app).count(updated) == 1


@pytest.mark.parametrize("what", ["safety", "dosing"])
def test_removing_a_row_someone_edited_meanwhile_is_refused_and_it_stays(
    app: Flask, admin: Admin, make_user: Callable[..., int], what: str
) -> None:
    other = second_admin(app, make_user)
    mid = monograph_id(app, "naltrexone")
    if what == "safety":
        row, model, data = safety_entry(app, "Pregnancy").id, SafetyEntry, {**PREGNANCY, "severity": "severe"}
        url, name = f"{BASE}/monographs/{mid}/safety/{row}", "The contraindication 'Pregnancy'"
    else:
        row, model = dosing_row(app, "Alcohol dependence").id, DosingRow
        data = {**ALCOHOL_DOSE, "max_daily_mg": "150"}
        url, name = f"{BASE}/monographs/{mid}/dosing/{row}", "The dosing row 'Alcohol dependence'"
    editor = other.get(f"{BASE}/monographs/{mid}")  # the second admin's page, with its remove buttons
    assert admin.post(url, {**data, "version": version_in(admin.get(url))}).status_code == 302

    refused = other.post(f"{url}/remove", removal_version(editor, f"{url}/remove"), follow=True)
    assert refused.status_code == 200
    assert (f"{name} was changed by someone else after you opened the page, so it is not removed"
            in flashes(refused.get_data(as_text=True)))
    with app.app_context():
        assert db.session.get(model, row).version == 2
    assert not [a for a in audit_actions(app) if a.endswith("_removed")]

    # From the page as it is now, the removal is deliberate and goes through.
    editor = other.get(f"{BASE}/monographs/{mid}")
    assert other.post(f"{url}/remove", removal_version(editor, f"{url}/remove")).status_code == 302
    with app.app_context():
        assert db.session.get(model, row) is None


@pytest.mark.parametrize("version", [None, "-1", "2147483648", "x"])
@pytest.mark.parametrize("what", ["safety", "dosing", "safety/remove", "dosing/remove"])
def test_a_row_save_or_removal_without_a_valid_version_is_refused(
    app: Flask, admin: Admin, what: str, version: str | None
) -> None:
    mid = monograph_id(app, "naltrexone")
    if what.startswith("safety"):
        row, data = safety_entry(app, "Pregnancy").id, {**PREGNANCY, "severity": "severe"}
    else:
        row, data = dosing_row(app, "Alcohol dependence").id, {**ALCOHOL_DOSE, "max_daily_mg": "150"}
    kind, _, action = what.partition("/")
    url = f"{BASE}/monographs/{mid}/{kind}/{row}" + (f"/{action}" if action else "")
    sent = {} if action else data
    response = admin.post(url, sent if version is None else {**sent, "version": version})
    assert response.status_code == 400
    assert not [a for a in audit_actions(app) if a.startswith("monograph.")]


def test_a_move_leaves_an_open_edit_form_valid(app: Flask, admin: Admin, make_user: Callable[..., int]) -> None:
    """A move changes only the order, which no edit form holds: it does not make other admins' forms stale."""
    other = second_admin(app, make_user)
    mid, row = monograph_id(app, "naltrexone"), dosing_row(app, "Alcohol dependence").id
    url = f"{BASE}/monographs/{mid}/dosing/{row}"
    form = other.get(url)
    before = row_ids(app, DosingRow, mid)
    assert admin.post(f"{url}/move", {"direction": "up"}).status_code == 302
    assert row_ids(app, DosingRow, mid) != before
    assert other.post(url, {**ALCOHOL_DOSE, "max_daily_mg": "150", "version": version_in(form)}).status_code == 302
    with app.app_context():
        assert db.session.get(DosingRow, row).max_daily_mg == Decimal("150")


def test_simultaneous_saves_of_one_safety_entry_keep_exactly_one(
    app: Flask, make_user: Callable[..., int]
) -> None:
    editors = [second_admin(app, make_user, f"admin{n}@example.com") for n in range(4)]
    mid, entry = monograph_id(app, "naltrexone"), safety_entry(app, "Pregnancy").id
    url = f"{BASE}/monographs/{mid}/safety/{entry}"
    start = threading.Barrier(len(editors))
    outcomes: dict[int, int] = {}

    def save(n: int) -> None:
        data = {**PREGNANCY, "severity": SEVERITIES[n % 3], "note": f"Note of editor {n}.", "version": "1"}
        start.wait()
        outcomes[n] = editors[n].post(url, data).status_code

    threads = [threading.Thread(target=save, args=(n,)) for n in range(len(editors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = [n for n, status in outcomes.items() if status == 302]
    assert len(outcomes) == len(editors) and len(winners) == 1
    assert sorted(outcomes.values()) == [302, 409, 409, 409]
    with app.app_context():
        stored = db.session.get(SafetyEntry, entry)
        assert (stored.note, stored.severity, stored.version) == (
            f"Note of editor {winners[0]}.", SEVERITIES[winners[0] % 3], 2)
    assert audit_actions(app).count("monograph.safety_updated") == 1


def test_simultaneous_removals_of_one_safety_entry_remove_it_once(
    app: Flask, admin: Admin, make_user: Callable[..., int]
) -> None:
    editors = [second_admin(app, make_user, f"admin{n}@example.com") for n in range(4)]
    mid, entry = monograph_id(app, "naltrexone"), safety_entry(app, "Pregnancy").id
    url = f"{BASE}/monographs/{mid}/safety/{entry}/remove"
    start = threading.Barrier(len(editors))
    outcomes: dict[int, int] = {}

    def remove(n: int) -> None:
        start.wait()
        outcomes[n] = editors[n].post(url, {"version": "1"}).status_code

    threads = [threading.Thread(target=remove, args=(n,)) for n in range(len(editors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # The first removes it; the others find it gone (404), none fails half-way.
    assert sorted(outcomes.values()) == [302, 404, 404, 404]
    assert audit_actions(app).count("monograph.safety_removed") == 1


# Access ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["customer", "pharmacist"])
def test_customers_and_pharmacists_cannot_change_monographs(
    app: Flask, signed_in: Callable[[str], FlaskClient], role: str
) -> None:
    from tests.conftest import csrf_token

    client = signed_in(role)
    token = csrf_token(client, "/account")
    mid = monograph_id(app, "naltrexone")
    before = counts(app)
    assert client.post(f"{BASE}/monographs/new", data={**NEW_MONOGRAPH, "csrf_token": token}).status_code == 403
    assert client.post(f"{BASE}/monographs/{mid}/uses/new",
                       data={**NEW_USE, "csrf_token": token}).status_code == 403
    assert counts(app) == before
