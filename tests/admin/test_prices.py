"""The admin price editor: preview, validation, history, version checks, package sizes, scheduled
changes, carts and orders after a change, CSV export/import, and who may use it."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import re
import threading
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import Address, User
from shop.admin import prices, prices_csv
from shop.audit import AuditEvent, utcnow
from shop.cart import services as cart
from shop.catalog.models import Package, Product, Strength
from shop.catalog.price_models import PriceChange
from shop.extensions import db
from shop.orders import services as orders
from shop.orders.models import Order
from shop.prescriptions.models import Prescription
from tests.conftest import csrf_token, sign_in

NALTREXONE_50_NOW = [
    ["30 film-coated tablets", "$7.14", "$214.24", "—", "—", "In stock"],
    ["60 film-coated tablets", "$6.76", "$405.46", "was $428.48", "5%", "In stock"],
    ["90 film-coated tablets", "$6.62 Best per pill", "$595.68", "was $642.72", "7%", "In stock"],
]
# The 60 pack at $399.00: $6.65 a pill, 6% off its list price of $428.48; the 90 pack stays best.
NALTREXONE_50_AT_399 = [
    NALTREXONE_50_NOW[0],
    ["60 film-coated tablets", "$6.65", "$399.00", "was $428.48", "6%", "In stock"],
    NALTREXONE_50_NOW[2],
]


# Helpers -------------------------------------------------------------------------------------------

class _PageParser(HTMLParser):
    """Collects each form's fields (by action) and each table's rows (by caption), as text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._form: dict[str, str] | None = None
        self._table: list[list[str]] | None = None
        self._caption: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._form = self.forms.setdefault(a.get("action") or "", {})
        elif tag in ("input", "textarea") and self._form is not None and a.get("name"):
            if a.get("type") not in ("submit", "file"):
                self._form[a["name"]] = a.get("value") or ""
        elif tag == "table":
            self._table, self._caption = [], []
        elif tag == "caption":
            self._caption = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None and self._in_body:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "caption" and self._caption is not None:
            self._caption_text = " ".join("".join(self._caption).split())
            self._caption = None
        elif tag == "table" and self._table is not None:
            self.tables[getattr(self, "_caption_text", "")] = self._table
            self._table, self._caption_text = None, ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def parse(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    return parser


def table(page: str, caption_start: str) -> list[list[str]]:
    tables = parse(page).tables
    matches = [rows for caption, rows in tables.items() if caption.startswith(caption_start)]
    assert len(matches) == 1, f"no single table captioned {caption_start!r}: {list(tables)}"
    return matches[0]


def package(units: int, strength_slug: str = "50-mg", product_slug: str = "naltrexone") -> Package:
    return db.session.scalars(
        sa.select(Package).join(Strength).join(Product)
        .where(Product.slug == product_slug, Strength.slug == strength_slug, Package.units == units)).one()


def ids(app: Flask, strength_slug: str = "50-mg") -> tuple[int, dict[int, int]]:
    """The strength's id and its package ids by units."""
    with app.app_context():
        strength = db.session.scalars(sa.select(Strength).join(Product).where(
            Product.slug == "naltrexone", Strength.slug == strength_slug)).one()
        return strength.id, {p.units: p.id for p in strength.packages}


def state(app: Flask, package_id: int) -> tuple[int, int, bool]:
    """(price_cents, version, active) as committed."""
    with app.app_context():
        row = db.session.execute(sa.select(Package.price_cents, Package.version, Package.active)
                                 .where(Package.id == package_id)).one()
        db.session.remove()
        return tuple(row)


def changes(app: Flask) -> list[PriceChange]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(PriceChange).order_by(PriceChange.id)))
        db.session.expunge_all()
        return rows


def audit_actions(app: Flask, prefix: str = "p") -> list[tuple[str, str | None, dict]]:
    with app.app_context():
        events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action.like(f"{prefix}%"))
                                    .order_by(AuditEvent.id)).all()
        return [(e.action, e.object_id, json.loads(e.details)) for e in events]


def apply_due(app: Flask, now: dt.datetime) -> int:
    """What the worker does, at a given time."""
    with app.app_context():
        try:
            return prices.apply_due_price_changes(now)
        finally:
            db.session.remove()


def editor_url(strength_id: int) -> str:
    return f"/admin/prices/strengths/{strength_id}"


def editor_form(client: FlaskClient, strength_id: int, page: str | None = None) -> dict[str, str]:
    """The price form's fields as the page carries them (prices, versions, CSRF token)."""
    page = page if page is not None else client.get(editor_url(strength_id)).get_data(as_text=True)
    return dict(parse(page).forms[editor_url(strength_id)])


def submit(client: FlaskClient, strength_id: int, new_prices: dict[int, str], button: str = "save",
           form: dict[str, str] | None = None, **extra: str):
    data = editor_form(client, strength_id) if form is None else dict(form)
    for package_id, text in new_prices.items():
        data[prices.price_field(package_id)] = text
    return client.post(editor_url(strength_id), data={**data, button: "1", **extra})


def flashes(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+">(.*?)</p>', page)]


@pytest.fixture
def admin(signed_in: Callable[[str], FlaskClient]) -> FlaskClient:
    return signed_in("admin")


# Preview -------------------------------------------------------------------------------------------

def test_preview_shows_the_customer_table_with_the_typed_prices_and_saves_nothing(
        app: Flask, admin: FlaskClient, client: FlaskClient) -> None:
    strength_id, packs = ids(app)
    page = admin.get(editor_url(strength_id)).get_data(as_text=True)
    assert table(page, "Naltrexone 50 mg") == NALTREXONE_50_NOW  # what customers see now

    response = submit(admin, strength_id, {packs[60]: "399.00"}, button="preview")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Preview: what customers will see" in page
    assert table(page, "Preview: Naltrexone 50 mg") == NALTREXONE_50_AT_399
    assert 'value="399.00"' in page  # the typed price stays in its field
    assert "Price warnings" not in page
    assert state(app, packs[60]) == (40546, 1, True)
    assert changes(app) == [] and audit_actions(app, "price") == []

    # Saved, the product page shows the same rows (it has a Buy column more).
    assert submit(admin, strength_id, {packs[60]: "399.00"}).status_code == 302
    product_page = client.get("/products/naltrexone").get_data(as_text=True)
    assert [row[:6] for row in table(product_page, "Naltrexone 50 mg")] == NALTREXONE_50_AT_399


def test_preview_is_built_by_the_product_page_functions(app_ctx: Flask) -> None:
    from shop.catalog.pricing import package_rows

    strength = package(60).strength
    assert prices.preview(strength, {}, 5).rows == package_rows(strength, 5)


def test_preview_warns_when_a_bigger_package_costs_more_per_pill(app: Flask, admin: FlaskClient) -> None:
    strength_id, packs = ids(app)
    response = submit(admin, strength_id, {packs[90]: "620.00"}, button="preview")
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    warnings = re.findall(r'<li class="warning warning-moderate"><span class="badge badge-moderate">Check</span> '
                          r'(.*?)</li>', page)
    # $6.89 a pill is more than the 60 pack's $6.76 (the 30 pack's $7.14 is still dearer).
    assert warnings == ["The 90 pack costs more per pill ($6.89) than the 60 pack ($6.76)."]
    assert table(page, "Preview")[1][1] == "$6.76 Best per pill"

    # A warning, not a refusal: saving goes ahead and says it again.
    response = submit(admin, strength_id, {packs[90]: "620.00"})
    assert response.status_code == 302
    assert state(app, packs[90]) == (62000, 2, True)
    assert "Please check: The 90 pack costs more per pill ($6.89) than the 60 pack ($6.76)." in flashes(
        admin.get(response.headers["Location"]).get_data(as_text=True))


# Validation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "message"), [
    ("0", "A price must be more than zero."),
    ("-5", "A price must be more than zero."),
    ("399.999", "A price has at most two decimals."),
    ("abc", "'abc' is not an amount of money."),
    ("100000.01", "A price must be at most $100,000.00."),
    ("", "Enter a price."),
])
@pytest.mark.parametrize("button", ["save", "preview"])
def test_invalid_prices_are_refused_beside_their_field_and_nothing_is_saved(
        app: Flask, admin: FlaskClient, typed: str, message: str, button: str) -> None:
    strength_id, packs = ids(app)
    # The 30 pack's new price is fine, the 60 pack's is not: neither is saved.
    response = submit(admin, strength_id, {packs[30]: "200.00", packs[60]: typed}, button=button)
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    field_id = prices.price_field(packs[60])
    assert f'<p class="error" id="{field_id}-error">{message}</p>' in page
    assert re.search(rf'<input aria-describedby="{field_id}-error" aria-invalid="true"[^>]* id="{field_id}"', page)
    assert f'<a href="#{field_id}">New price for 60 film-coated tablets: {message}</a>' in page  # the summary
    assert "Preview: what customers will see" not in page
    assert state(app, packs[30]) == (21424, 1, True)
    assert state(app, packs[60]) == (40546, 1, True)
    assert changes(app) == [] and audit_actions(app, "price") == []


def test_the_highest_allowed_price_is_accepted(app: Flask, admin: FlaskClient) -> None:
    strength_id, packs = ids(app)
    assert submit(admin, strength_id, {packs[90]: "$100,000.00"}).status_code == 302
    assert state(app, packs[90])[0] == 10_000_000


# History and audit ---------------------------------------------------------------------------------

def test_a_save_is_kept_in_the_history_and_the_audit_log(
        app: Flask, admin: FlaskClient, users: dict[str, int]) -> None:
    strength_id, packs = ids(app)
    response = submit(admin, strength_id, {packs[60]: "399.00"}, reason="Supplier price rise")
    assert response.status_code == 302
    assert response.headers["Location"] == editor_url(strength_id)
    assert state(app, packs[60]) == (39900, 2, True)

    [change] = changes(app)
    assert (change.package_id, change.kind, change.old_price_cents, change.new_price_cents) == (
        packs[60], "price", 40546, 39900)
    assert (change.reason, change.actor_id, change.cancelled_at) == ("Supplier price rise", users["admin"], None)
    assert change.applied_at == change.effective_at == change.created_at
    assert abs(change.applied_at - utcnow()) < dt.timedelta(minutes=1)
    [(action, object_id, details)] = audit_actions(app, "price")
    assert (action, object_id) == ("price.changed", str(packs[60]))
    assert (details["old_price_cents"], details["new_price_cents"], details["reason"]) == (
        40546, 39900, "Supplier price rise")

    page = admin.get(editor_url(strength_id)).get_data(as_text=True)
    assert "1 price saved. Customers see the new prices now." in flashes(page)
    [row] = table(page, "Changes to the packages")
    assert row[1:] == ["60 film-coated tablets", "Price changed", "$405.46", "$399.00", "admin@example.com",
                       "Supplier price rise"]

    # Saving the form unchanged records nothing more.
    response = submit(admin, strength_id, {})
    assert "Nothing to save: the prices are unchanged." in flashes(
        admin.get(response.headers["Location"]).get_data(as_text=True))
    assert len(changes(app)) == 1 and state(app, packs[60]) == (39900, 2, True)


# Concurrent edits ----------------------------------------------------------------------------------

def second_admin(app: Flask, make_user: Callable[..., int]) -> FlaskClient:
    make_user("admin2@example.com", role="admin")
    other = app.test_client()
    assert sign_in(other, app, "admin2@example.com").status_code == 302
    return other


def field_error(page: str, package_id: int) -> str:
    found = re.search(rf'<p class="error" id="{prices.price_field(package_id)}-error">(.*?)</p>', page)
    assert found, f"no error beside the price field of package {package_id}"
    return found.group(1)


def marked_rows(page: str) -> list[str]:
    """The editor's rows marked as changed by someone else."""
    return [row[0] for row in table(page, "Packages on sale") if "Changed meanwhile" in row[0]]


WHEN = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"


def test_the_second_saver_is_told_the_price_changed_and_nothing_is_lost(
        app: Flask, admin: FlaskClient, make_user: Callable[..., int]) -> None:
    strength_id, packs = ids(app)
    other = second_admin(app, make_user)

    first_form, second_form = editor_form(admin, strength_id), editor_form(other, strength_id)
    assert submit(admin, strength_id, {packs[60]: "399.00"}, form=first_form).status_code == 302

    # The second editor read version 1 too: refused, told who set which price, and none of it is saved.
    response = submit(other, strength_id, {packs[30]: "220.00", packs[60]: "420.00"}, form=second_form)
    assert response.status_code == 409
    page = html.unescape(response.get_data(as_text=True))
    assert re.fullmatch(rf"This price was changed by admin@example.com at {WHEN} meanwhile: now \$399.00. "
                        "Your price is still in the field: review it and save again.", field_error(page, packs[60]))
    assert marked_rows(page) == ["60 film-coated tablets Changed meanwhile"]
    assert state(app, packs[60]) == (39900, 2, True)
    assert state(app, packs[30]) == (21424, 1, True)
    assert [c.new_price_cents for c in changes(app)] == [39900]

    # The page now carries the current version and the typed prices: saving again is deliberate.
    retry = editor_form(other, strength_id, page)
    assert retry[prices.version_field(packs[60])] == "2"
    assert retry[prices.original_field(packs[60])] == "399.00"
    assert (retry[prices.price_field(packs[30])], retry[prices.price_field(packs[60])]) == ("220.00", "420.00")
    assert submit(other, strength_id, {}, form=retry).status_code == 302
    assert state(app, packs[60]) == (42000, 3, True)
    assert state(app, packs[30]) == (22000, 2, True)
    assert [(c.old_price_cents, c.new_price_cents) for c in changes(app)] == [
        (40546, 39900), (21424, 22000), (39900, 42000)]


def test_a_field_left_alone_shows_the_price_that_won_and_saving_again_keeps_it(
        app: Flask, admin: FlaskClient, make_user: Callable[..., int]) -> None:
    """The issue's lost update: the second admin edits only the 30 pack while the first changes the 90."""
    strength_id, packs = ids(app)
    other = second_admin(app, make_user)
    second_form = editor_form(other, strength_id)
    assert submit(admin, strength_id, {packs[90]: "580.00"}, reason="Match the wholesaler").status_code == 302

    response = submit(other, strength_id, {packs[30]: "220.00"}, form=second_form)
    assert response.status_code == 409
    page = html.unescape(response.get_data(as_text=True))
    assert state(app, packs[30]) == (21424, 1, True) and state(app, packs[90]) == (58000, 2, True)
    # The 90 field now holds the price that won, is marked, and says who changed it, when and how.
    retry = editor_form(other, strength_id, page)
    assert retry[prices.price_field(packs[90])] == "580.00"
    assert retry[prices.price_field(packs[30])] == "220.00"  # the edit is kept, to be saved deliberately
    assert marked_rows(page) == ["90 film-coated tablets Changed meanwhile"]
    assert flashes(page)[0].startswith("Nothing was saved: prices changed while you were editing.")
    assert re.fullmatch(rf"Changed meanwhile by admin@example.com at {WHEN}: \$595.68 → \$580.00. This field "
                        "now shows the current price.", field_error(page, packs[90]))
    assert table(page, "Packages on sale")[2][1] == "$580.00"  # "Price now" agrees with the field

    # Saving again, as the message invites, writes the 30 pack and keeps the first admin's 90 pack.
    assert submit(other, strength_id, {}, form=retry).status_code == 302
    assert state(app, packs[90]) == (58000, 2, True)
    assert state(app, packs[30]) == (22000, 2, True)
    assert [(c.package_id, c.new_price_cents) for c in changes(app)] == [(packs[90], 58000), (packs[30], 22000)]


def test_a_field_left_alone_is_never_written(app: Flask, admin: FlaskClient) -> None:
    """Only a price typed over the price its field started from is saved: a field that still holds its
    original is not written, even when it differs from the stored price and the version matches."""
    strength_id, packs = ids(app)
    form = editor_form(admin, strength_id)
    form[prices.original_field(packs[90])] = form[prices.price_field(packs[90])] = "500.00"
    assert submit(admin, strength_id, {packs[60]: "399.00"}, form=form).status_code == 302
    assert state(app, packs[90]) == (59568, 1, True)
    assert state(app, packs[60]) == (39900, 2, True)
    assert [c.package_id for c in changes(app)] == [packs[60]]

    # The same in the service: an edit equal to its original is left alone.
    with app.app_context():
        actor = db.session.scalars(sa.select(User).where(User.email == "admin@example.com")).one()
        result = prices.save_prices(strength_id, [prices.PriceEdit(packs[30], "1.00", 1, "1.00")], actor)
        db.session.remove()
    assert result.changed == 0 and state(app, packs[30]) == (21424, 1, True)


def test_simultaneous_saves_of_one_version_keep_exactly_one(app: Flask, users: dict[str, int]) -> None:
    strength_id, packs = ids(app)
    typed = ["401.00", "402.00", "403.00", "404.00"]
    start = threading.Barrier(len(typed))
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def save(text: str) -> None:
        with app.app_context():
            actor = db.session.get(User, users["admin"])
            start.wait()
            try:
                prices.save_prices(strength_id, [prices.PriceEdit(packs[60], text, 1)], actor)
                outcome = ("saved", text)
            except prices.PriceConflict as conflict:
                outcome = ("refused", conflict.errors[prices.price_field(packs[60])])
            finally:
                db.session.remove()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=save, args=(text,)) for text in typed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    saved = [text for kind, text in outcomes if kind == "saved"]
    assert len(outcomes) == len(typed) and len(saved) == 1
    winner = saved[0]
    refusal = (rf"This price was changed by admin@example.com at {WHEN} meanwhile: now \${winner}. Your price is "
               "still in the field: review it and save again.")
    refused = [text for kind, text in outcomes if kind == "refused"]
    assert len(refused) == len(typed) - 1 and all(re.fullmatch(refusal, text) for text in refused)
    assert state(app, packs[60]) == (int(winner.replace(".", "")), 2, True)
    assert [c.new_price_cents for c in changes(app)] == [int(winner.replace(".", ""))]


# Package sizes -------------------------------------------------------------------------------------

def test_adding_a_package_size(app: Flask, admin: FlaskClient, client: FlaskClient) -> None:
    strength_id, packs = ids(app)
    token = csrf_token(admin, editor_url(strength_id))
    response = admin.post(f"/admin/prices/strengths/{strength_id}/packages", data={
        "csrf_token": token, "add-units": "120", "add-price": "776.00", "add-reason": "Quarterly supply"})
    assert response.status_code == 302
    _, packs = ids(app)
    assert state(app, packs[120]) == (77600, 1, True)
    [change] = changes(app)
    assert (change.kind, change.old_price_cents, change.new_price_cents, change.reason) == (
        "added", None, 77600, "Quarterly supply")
    assert [a[0] for a in audit_actions(app, "package")] == ["package.added"]
    product_rows = table(client.get("/products/naltrexone").get_data(as_text=True), "Naltrexone 50 mg")
    assert product_rows[-1][:5] == ["120 film-coated tablets", "$6.47 Best per pill", "$776.00", "was $856.96",
                                    "9%"]


@pytest.mark.parametrize(("units", "price", "field", "message"), [
    ("", "100.00", "units", "Enter the number of tablets or capsules in the package."),
    ("0", "100.00", "units", "Enter a whole number from 1 to 10,000."),
    ("10001", "100.00", "units", "Enter a whole number from 1 to 10,000."),
    ("1.5", "100.00", "units", "Enter a whole number from 1 to 10,000."),
    ("60", "100.00", "units", "There is already a 60 pack."),
    ("120", "12.345", "price", "A price has at most two decimals."),
    ("120", "", "price", "Enter a price."),
])
def test_a_bad_new_package_is_refused_beside_its_field(
        app: Flask, admin: FlaskClient, units: str, price: str, field: str, message: str) -> None:
    strength_id, packs = ids(app)
    token = csrf_token(admin, editor_url(strength_id))
    response = admin.post(f"/admin/prices/strengths/{strength_id}/packages",
                          data={"csrf_token": token, "add-units": units, "add-price": price})
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert f'<p class="error" id="add-{field}-error">{message}</p>' in page
    assert ids(app)[1] == packs and changes(app) == []


def test_retiring_and_restoring_a_package(app: Flask, admin: FlaskClient, client: FlaskClient) -> None:
    strength_id, packs = ids(app)
    token = csrf_token(admin, editor_url(strength_id))
    response = admin.post(f"/admin/prices/packages/{packs[90]}/retire", data={"csrf_token": token, "version": "1"})
    assert response.status_code == 302 and response.headers["Location"] == editor_url(strength_id)
    assert state(app, packs[90]) == (59568, 2, False)
    product_rows = table(client.get("/products/naltrexone").get_data(as_text=True), "Naltrexone 50 mg")
    assert [row[0] for row in product_rows] == ["30 film-coated tablets", "60 film-coated tablets"]
    page = admin.get(editor_url(strength_id)).get_data(as_text=True)
    assert "The 90 pack is retired: customers no longer see it." in flashes(page)
    assert "Restore<span class=\"visually-hidden\"> the 90 pack</span>" in page
    assert prices.price_field(packs[90]) not in editor_form(admin, strength_id, page)  # no price to edit

    # A restore from a page read before the retirement is refused.
    admin.post(f"/admin/prices/packages/{packs[90]}/restore", data={"csrf_token": token, "version": "1"})
    assert state(app, packs[90]) == (59568, 2, False)
    admin.post(f"/admin/prices/packages/{packs[90]}/restore", data={"csrf_token": token, "version": "2"})
    assert state(app, packs[90]) == (59568, 3, True)
    assert [(c.kind, c.package_id) for c in changes(app)] == [("retired", packs[90]), ("restored", packs[90])]
    assert [a[0] for a in audit_actions(app, "package")] == ["package.retired", "package.restored"]
    assert [row[2] for row in table(admin.get(editor_url(strength_id)).get_data(as_text=True),
                                    "Changes to the packages")] == ["Restored", "Retired"]


def test_the_last_package_on_sale_cannot_be_retired(app: Flask, admin: FlaskClient) -> None:
    # Retiring it would take the whole strength off sale: a catalog decision, not a price edit.
    strength_id, packs = ids(app, "4-5-mg")
    token = csrf_token(admin, editor_url(strength_id))
    admin.post(f"/admin/prices/packages/{packs[90]}/retire", data={"csrf_token": token, "version": "1"})
    response = admin.post(f"/admin/prices/packages/{packs[30]}/retire", data={"csrf_token": token, "version": "1"})
    assert response.status_code == 302
    assert ("The 30 pack is the last package on sale of Naltrexone 4.5 mg. Add another size first, or take "
            "the strength off sale in the catalog.") in flashes(
        admin.get(response.headers["Location"]).get_data(as_text=True))
    assert state(app, packs[30]) == (4500, 1, True)
    assert [c.kind for c in changes(app)] == ["retired"]


# Scheduled changes ---------------------------------------------------------------------------------

def test_a_scheduled_change_applies_when_due_and_can_be_cancelled(
        app: Flask, admin: FlaskClient, client: FlaskClient) -> None:
    strength_id, packs = ids(app)
    stale_form = editor_form(admin, strength_id)
    when = (utcnow() + dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    response = submit(admin, strength_id, {packs[60]: "399.00"}, effective_at=when.strftime("%Y-%m-%dT%H:%M"),
                      reason="New list")
    assert response.status_code == 302
    page = admin.get(editor_url(strength_id)).get_data(as_text=True)
    assert f"1 price scheduled for {when:%Y-%m-%d %H:%M} UTC." in flashes(page)
    assert table(page, "Price changes waiting")[0][:5] == [
        f"{when:%Y-%m-%d %H:%M}", "60 film-coated tablets", "$399.00", "admin@example.com", "New list"]
    assert state(app, packs[60]) == (40546, 1, True)  # customers still pay the old price
    assert "$405.46" in client.get("/products/naltrexone").get_data(as_text=True)

    assert apply_due(app, when - dt.timedelta(minutes=1)) == 0
    assert apply_due(app, when) == 1
    assert state(app, packs[60]) == (39900, 2, True)
    [change] = changes(app)
    assert (change.old_price_cents, change.new_price_cents, change.applied_at, change.effective_at) == (
        40546, 39900, when, when)
    assert apply_due(app, when + dt.timedelta(hours=1)) == 0  # applied once
    assert audit_actions(app, "price.changed")[0][2]["scheduled_change"] == change.id
    page = admin.get(editor_url(strength_id)).get_data(as_text=True)
    assert table(page, "Changes to the packages")[0][2:5] == ["Price changed (scheduled)", "$405.46", "$399.00"]
    assert "Scheduled changes" not in page

    # An editor opened before the change was applied is told about it.
    response = submit(admin, strength_id, {packs[60]: "410.00"}, form=stale_form)
    assert response.status_code == 409
    assert "now $399.00. Your price is still in the field" in response.get_data(as_text=True)

    # A cancelled change never applies.
    later = when + dt.timedelta(days=1)
    submit(admin, strength_id, {packs[60]: "410.00"}, effective_at=later.strftime("%Y-%m-%dT%H:%M"))
    pending = changes(app)[-1]
    token = csrf_token(admin, editor_url(strength_id))
    response = admin.post(f"/admin/prices/changes/{pending.id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302
    assert "The scheduled price change is cancelled." in flashes(
        admin.get(response.headers["Location"]).get_data(as_text=True))
    assert apply_due(app, later + dt.timedelta(hours=1)) == 0
    assert state(app, packs[60]) == (39900, 2, True)
    admin.post(f"/admin/prices/changes/{pending.id}/cancel", data={"csrf_token": token})
    assert "This scheduled change was already applied or cancelled." in flashes(
        admin.get(editor_url(strength_id)).get_data(as_text=True))
    assert [a[0] for a in audit_actions(app, "price")] == [
        "price.scheduled", "price.changed", "price.scheduled", "price.schedule_cancelled"]


def test_a_schedule_in_the_past_is_refused(app: Flask, admin: FlaskClient) -> None:
    strength_id, packs = ids(app)
    past = utcnow() - dt.timedelta(hours=1)
    response = submit(admin, strength_id, {packs[60]: "399.00"}, effective_at=past.strftime("%Y-%m-%dT%H:%M"))
    assert response.status_code == 422
    assert ('<p class="error" id="effective_at-error">Choose a time in the future, or leave it empty to apply '
            "the change now.</p>") in response.get_data(as_text=True)
    assert state(app, packs[60]) == (40546, 1, True) and changes(app) == []


# Carts and orders ----------------------------------------------------------------------------------

def test_a_cart_shows_and_charges_the_new_price_and_a_placed_order_keeps_its_own(
        app: Flask, admin: FlaskClient, signed_in: Callable[[str], FlaskClient], users: dict[str, int]) -> None:
    strength_id, packs = ids(app)
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        db.session.add(Prescription(customer_id=customer.id, status="approved", product_id=package(60).strength
                                    .product_id, strength_id=strength_id, quantity_authorised=180, refills=0,
                                    expires_on=dt.date.today() + dt.timedelta(days=300)))
        address = Address(user_id=customer.id, recipient="R", line1="1 Main St", city="Portland", state="OR",
                          postal_code="97204", is_default=True)
        db.session.add(address)
        db.session.commit()
        address_id = address.id
        cart.add(customer, packs[60])
        placed = orders.place_order(customer, address_id, "before-the-change").number
        db.session.remove()
    shopper = signed_in("customer")
    token = csrf_token(shopper, "/cart")
    assert shopper.post("/cart/add", data={"csrf_token": token, "package_id": packs[60]}).status_code == 302

    assert submit(admin, strength_id, {packs[60]: "399.00"}).status_code == 302

    page = html.unescape(shopper.get("/cart").get_data(as_text=True))
    assert "$399.00 a pack" in page
    assert "Price changed</span> <span class=\"muted\">was $405.46 when you added it" in page
    with app.app_context():
        customer = db.session.get(User, users["customer"])
        assert cart.view(customer).subtotal_cents == 39900
        second = orders.place_order(customer, address_id, "after-the-change")
        assert [line.unit_price_cents for line in second.lines] == [39900]
        first = db.session.scalars(sa.select(Order).where(Order.number == placed)).one()
        assert [line.unit_price_cents for line in first.lines] == [40546]
        assert first.subtotal_cents == 40546
    order_page = shopper.get(f"/orders/{placed}").get_data(as_text=True)
    assert "$405.46" in order_page and "$399.00" not in order_page


# CSV -----------------------------------------------------------------------------------------------

def test_the_export_lists_every_package(app: Flask, admin: FlaskClient) -> None:
    response = admin.get("/admin/prices/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="prices-')
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "product_slug,strength_slug,units,price,active,version"
    assert "naltrexone,50-mg,60,405.46,true,1" in lines
    with app.app_context():
        assert len(lines) - 1 == db.session.scalar(sa.select(sa.func.count(Package.id)))


def upload(client: FlaskClient, text: str | bytes, filename: str = "prices.csv"):
    data = text.encode() if isinstance(text, str) else text
    return client.post("/admin/prices/import", data={
        "csrf_token": csrf_token(client, "/admin/prices"), "file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data")


def test_a_good_file_is_applied_with_history_and_audit(app: Flask, admin: FlaskClient) -> None:
    _, packs = ids(app)
    exported = admin.get("/admin/prices/export.csv").get_data(as_text=True)
    edited = (exported.replace("naltrexone,50-mg,60,405.46,true", "naltrexone,50-mg,60,399.00,true")
              .replace("naltrexone,50-mg,90,595.68,true", "naltrexone,50-mg,90,595.68,false"))
    rows = len(exported.splitlines()) - 1
    response = upload(admin, edited)
    assert response.status_code == 302
    assert (f"Imported {rows} rows: 1 price(s) changed, 1 package(s) retired, 0 restored, {rows - 2} row(s) "
            "unchanged.") in flashes(admin.get(response.headers["Location"]).get_data(as_text=True))
    assert state(app, packs[60]) == (39900, 2, True)
    assert state(app, packs[90]) == (59568, 2, False)
    assert [(c.kind, c.old_price_cents, c.new_price_cents, c.reason) for c in changes(app)] == [
        ("price", 40546, 39900, "CSV import prices.csv"), ("retired", 59568, 59568, "CSV import prices.csv")]
    assert [a[0] for a in audit_actions(app, "p")] == ["price.changed", "package.retired", "prices.imported"]
    # The same file again changes nothing.
    assert upload(admin, edited).status_code == 302
    assert len(changes(app)) == 2


def test_a_file_with_bad_rows_applies_nothing_and_lists_each_one(app: Flask, admin: FlaskClient) -> None:
    _, packs = ids(app)
    response = upload(admin, "\n".join([
        "product_slug,strength_slug,units,price,active",
        "naltrexone,50-mg,60,399.00,true",      # line 2: fine on its own
        "naltrexone,50-mg,45,100.00,true",      # 3: no such package
        "naltrexone,50-mg,90,12.345,true",      # 4: three decimals
        "naltrexone,50-mg,30,214.24,maybe",     # 5: not a yes or no
        "naltrexone,50-mg,60,398.00,true",      # 6: the package of line 2 again
        "nosuch,50-mg,30,0,true",               # 7: two problems
        "naltrexone,50-mg,1.5,1.00,true",       # 8: units in halves
        "naltrexone,4-5-mg,30,45.00,false",     # 9, 10: the strength's last packages off sale
        "naltrexone,4-5-mg,90,118.80,false",
    ]) + "\n")
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert '<p class="error" id="file-error">8 rows have problems: nothing was imported.</p>' in page
    assert table(page, "Rows with problems") == [
        ["3", "no 45 pack of naltrexone 50-mg: the import changes existing packages only (add new sizes in the "
              "price editor)"],
        ["4", "price '12.345': a price has at most two decimals"],
        ["5", "active must be true or false, not 'maybe'"],
        ["6", "the same package as line 2"],
        ["7", "price '0': a price must be more than zero; no 30 pack of nosuch 50-mg: the import changes "
              "existing packages only (add new sizes in the price editor)"],
        ["8", "units '1.5': enter a whole number from 1 to 10,000"],
        ["9", "would take the last package of Naltrexone 4.5 mg off sale"],
        ["10", "would take the last package of Naltrexone 4.5 mg off sale"],
    ]
    assert state(app, packs[60]) == (40546, 1, True)
    assert changes(app) == [] and audit_actions(app, "p") == []


def test_an_old_export_never_writes_back_a_price_changed_since(app: Flask, admin: FlaskClient) -> None:
    """A row of a package changed since the export must say what the package is now; an edited row of
    such a package is refused (the price editor's version rule, for files)."""
    strength_id, packs = ids(app)
    exported = admin.get("/admin/prices/export.csv").get_data(as_text=True)
    assert submit(admin, strength_id, {packs[90]: "580.00"}).status_code == 302  # after the export

    for stale in (exported.replace("naltrexone,50-mg,60,405.46,true", "naltrexone,50-mg,60,399.00,true"),
                  exported.replace("naltrexone,50-mg,90,595.68,true", "naltrexone,50-mg,90,590.00,true")):
        response = upload(admin, stale)
        assert response.status_code == 422
        [problem] = table(html.unescape(response.get_data(as_text=True)), "Rows with problems")
        assert problem[1] == ("the package was changed after the file was exported (version 1, now 2) and "
                              "now costs $580.00: export the prices again and make this change there")
        assert state(app, packs[90]) == (58000, 2, True) and state(app, packs[60]) == (40546, 1, True)
    # A row saying what the package is now is fine.
    edited = (exported.replace("naltrexone,50-mg,60,405.46,true", "naltrexone,50-mg,60,399.00,true")
              .replace("naltrexone,50-mg,90,595.68,true", "naltrexone,50-mg,90,580.00,true"))
    assert upload(admin, edited).status_code == 302
    assert state(app, packs[60]) == (39900, 2, True) and state(app, packs[90]) == (58000, 2, True)


def test_an_old_export_never_undoes_a_retirement_or_a_restore(app: Flask, admin: FlaskClient) -> None:
    """Admin A exports, admin B retires the 90 pack (a recall): A's old file with an unrelated edit is
    refused as a whole and the 90 pack stays off sale; likewise a restore is not undone."""
    _, packs = ids(app)
    exported = admin.get("/admin/prices/export.csv").get_data(as_text=True)
    with app.app_context():
        admin_user = db.session.scalars(sa.select(User).where(User.role == "admin")).first()
        prices.retire_package(packs[90], 1, admin_user)
    edited = exported.replace("naltrexone,50-mg,60,405.46,true", "naltrexone,50-mg,60,399.00,true")
    response = upload(admin, edited)
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    [(line, problem)] = table(page, "Rows with problems")
    assert line == str(exported.splitlines().index("naltrexone,50-mg,90,595.68,true,1") + 1)
    assert problem == ("the package was changed after the file was exported (version 1, now 2) and now is "
                       "retired: export the prices again and make this change there")
    assert state(app, packs[90]) == (59568, 2, False) and state(app, packs[60]) == (40546, 1, True)
    assert changes(app)[-1].kind == "retired" and len(changes(app)) == 1

    # Exported while retired, restored meanwhile: the old file's "false" does not retire it again.
    exported = admin.get("/admin/prices/export.csv").get_data(as_text=True)
    with app.app_context():
        admin_user = db.session.scalars(sa.select(User).where(User.role == "admin")).first()
        prices.restore_package(packs[90], 2, admin_user)
    response = upload(admin, exported.replace("naltrexone,50-mg,60,405.46,true", "naltrexone,50-mg,60,399.00,true"))
    assert response.status_code == 422
    assert "now is on sale again" in html.unescape(response.get_data(as_text=True))
    assert state(app, packs[90]) == (59568, 3, True) and state(app, packs[60]) == (40546, 1, True)


def test_a_file_without_versions_is_applied_as_it_is_and_says_so(app: Flask, admin: FlaskClient) -> None:
    _, packs = ids(app)
    with app.app_context():
        admin_user = db.session.scalars(sa.select(User).where(User.role == "admin")).first()
        prices.retire_package(packs[90], 1, admin_user)
    hand_made = "product_slug,strength_slug,units,price,active\nnaltrexone,50-mg,90,590.00,true\n"
    response = upload(admin, hand_made)
    assert response.status_code == 302
    said = flashes(admin.get(response.headers["Location"]).get_data(as_text=True))
    assert ("1 row(s) had no version from an export: they were applied as they are, over any change made to "
            "those packages meanwhile.") in said
    assert state(app, packs[90]) == (59000, 3, True)
    bad = "product_slug,strength_slug,units,price,active,version\nnaltrexone,50-mg,90,590.00,true,x1\n"
    response = upload(admin, bad)
    assert response.status_code == 422
    assert table(html.unescape(response.get_data(as_text=True)), "Rows with problems") == [
        ["2", "version 'x1': not a version the export writes (leave it as exported)"]]


def confirm_form(page: str) -> dict[str, str]:
    return dict(parse(page).forms["/admin/prices/import/confirm"])


def test_an_import_with_per_pill_warnings_is_shown_first_and_applied_only_when_confirmed(
        app: Flask, admin: FlaskClient) -> None:
    _, packs = ids(app)
    exported = admin.get("/admin/prices/export.csv").get_data(as_text=True)
    # The 60 pack at $440.00 is $7.33 a pill, dearer than the 30 pack's $7.14: the editor's warning.
    edited = exported.replace("naltrexone,50-mg,60,405.46,true", "naltrexone,50-mg,60,440.00,true")
    response = upload(admin, edited, filename="spring.csv")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert "Check the price file before it is applied" in page
    warning = "Naltrexone 50 mg: The 60 pack costs more per pill ($7.33) than the 30 pack ($7.14)."
    assert re.findall(r'<span class="badge badge-moderate">Check</span> (.*?)</li>', page) == [warning]
    assert "it would change 1 price, retire 0 and restore 0 packages" in page
    assert state(app, packs[60]) == (40546, 1, True)  # nothing applied yet
    assert changes(app) == [] and audit_actions(app, "p") == []

    # "Apply the file anyway" applies exactly the checked file.
    response = admin.post("/admin/prices/import/confirm", data=confirm_form(page))
    assert response.status_code == 302
    assert f"Applied despite this warning: {warning}" in flashes(
        admin.get(response.headers["Location"]).get_data(as_text=True))
    assert state(app, packs[60]) == (44000, 2, True)
    assert [(c.new_price_cents, c.reason) for c in changes(app)] == [(44000, "CSV import spring.csv")]
    imported = audit_actions(app, "prices.imported")[0][2]
    assert imported["warnings_accepted"] == [warning]


def test_a_confirmation_is_refused_when_the_warnings_changed_meanwhile(app: Flask, admin: FlaskClient) -> None:
    strength_id, packs = ids(app)
    edited = "product_slug,strength_slug,units,price,active\nnaltrexone,50-mg,60,440.00,true\n"  # one row
    checked = confirm_form(upload(admin, edited).get_data(as_text=True))
    assert submit(admin, strength_id, {packs[30]: "200.00"}).status_code == 302  # the 30 pack: $6.67 a pill

    response = admin.post("/admin/prices/import/confirm", data=checked)
    assert response.status_code == 409
    page = html.unescape(response.get_data(as_text=True))
    assert "The warnings changed since you looked" in page
    assert ("Naltrexone 50 mg: The 60 pack costs more per pill ($7.33) than the 30 pack ($6.67).") in page
    assert state(app, packs[60]) == (40546, 1, True)
    # The page offers the new warnings to confirm; confirming them applies the file.
    assert admin.post("/admin/prices/import/confirm", data=confirm_form(page)).status_code == 302
    assert state(app, packs[60]) == (44000, 2, True)


def test_a_confirmation_applies_only_the_file_that_was_checked(app: Flask, admin: FlaskClient) -> None:
    """The confirmation vouches for the file itself: another file with the same warnings (here one that
    also retires the 90 pack) does not get through with the first file's confirmation."""
    _, packs = ids(app)
    checked_file = "product_slug,strength_slug,units,price,active\nnaltrexone,50-mg,60,440.00,true\n"
    checked = confirm_form(upload(admin, checked_file).get_data(as_text=True))
    other_file = checked_file + "naltrexone,50-mg,90,595.68,false\n"
    other = confirm_form(upload(admin, other_file).get_data(as_text=True))
    assert other["accept"] != checked["accept"]

    forged = checked | {"content": base64.b64encode(other_file.encode()).decode()}
    response = admin.post("/admin/prices/import/confirm", data=forged)
    assert response.status_code == 409
    page = html.unescape(response.get_data(as_text=True))
    assert "or this is not the file you checked" in page and "retire 1 and restore 0" in page
    assert state(app, packs[60]) == (40546, 1, True) and state(app, packs[90]) == (59568, 1, True)
    assert changes(app) == []
    for bad in ("é" * 64, "0" * 64):  # not even hexadecimal, or a guess: refused the same way
        assert admin.post("/admin/prices/import/confirm", data=checked | {"accept": bad}).status_code == 409
    assert changes(app) == []
    assert admin.post("/admin/prices/import/confirm", data=checked).status_code == 302
    assert state(app, packs[60]) == (44000, 2, True) and state(app, packs[90]) == (59568, 1, True)


@pytest.mark.parametrize("content", ["", "not base64!", "QUJD" * 1_000_000])
def test_a_confirmation_without_the_checked_file_changes_nothing(
        app: Flask, admin: FlaskClient, content: str) -> None:
    _, packs = ids(app)
    response = admin.post("/admin/prices/import/confirm", data={
        "csrf_token": csrf_token(admin, "/admin/prices"), "content": content, "accept": "0" * 64})
    assert response.status_code == 422
    assert ('<p class="error" id="file-error">The checked file did not come back: import it again.</p>'
            in response.get_data(as_text=True))
    assert state(app, packs[60]) == (40546, 1, True) and changes(app) == []


def test_a_file_with_a_long_or_odd_name_is_imported(app: Flask, admin: FlaskClient) -> None:
    _, packs = ids(app)
    edited = "product_slug,strength_slug,units,price,active\nnaltrexone,50-mg,60,399.00,true\n"
    name = "prices\x00" + "é" * 120 + ".csv"
    assert upload(admin, edited, filename=name).status_code == 302
    assert state(app, packs[60]) == (39900, 2, True)
    [(_, object_id, _)] = audit_actions(app, "prices.imported")
    assert object_id == "prices" + "é" * 58


@pytest.mark.parametrize(("content", "message"), [
    ("product,price\nnaltrexone,1.00\n",
     "The first line must name the columns product_slug,strength_slug,units,price,active,version "
     "(version may be left out). Missing: product_slug, strength_slug, units, active. Unknown: "
     "product."),
    ("product_slug,strength_slug,units,price,active\n", "The file has no rows after the column names."),
    (b"\xff\xfe\x00bad", "The file is not UTF-8 text: save it as CSV (UTF-8)."),
    ("", "The file is empty."),
])
def test_a_file_that_is_not_a_price_list_is_refused(
        app: Flask, admin: FlaskClient, content: str | bytes, message: str) -> None:
    response = upload(admin, content)
    assert response.status_code == 422
    assert f'<p class="error" id="file-error">{message}</p>' in html.unescape(response.get_data(as_text=True))
    assert changes(app) == []


# Access --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["visitor", "customer", "pharmacist"])
def test_nobody_but_an_admin_can_read_or_change_prices(
        app: Flask, role: str, signed_in: Callable[[str], FlaskClient], users: dict[str, int]) -> None:
    strength_id, packs = ids(app)
    with app.app_context():
        admin_user = db.session.get(User, users["admin"])
        pending = prices.save_prices(strength_id, [prices.PriceEdit(packs[30], "220.00", 1)], admin_user,
                                     effective_at=utcnow() + dt.timedelta(days=1))
        assert pending.changed == 1
        pending_id = db.session.scalar(sa.select(PriceChange.id))
        exported = prices_csv.export_csv()
    client = app.test_client() if role == "visitor" else signed_in(role)
    token = csrf_token(client, "/account/sign-in" if role == "visitor" else "/account")
    expected = 302 if role == "visitor" else 403
    requests = [
        ("GET", "/admin/prices", {}),
        ("GET", editor_url(strength_id), {}),
        ("GET", "/admin/prices/export.csv", {}),
        ("POST", editor_url(strength_id), {prices.price_field(packs[60]): "1.00",
                                           prices.version_field(packs[60]): "1", "save": "1"}),
        ("POST", f"/admin/prices/strengths/{strength_id}/packages", {"add-units": "120", "add-price": "1.00"}),
        ("POST", f"/admin/prices/packages/{packs[90]}/retire", {"version": "1"}),
        ("POST", f"/admin/prices/changes/{pending_id}/cancel", {}),
        ("POST", "/admin/prices/import", {"file": (io.BytesIO(exported.replace("405.46", "1.00").encode()),
                                                   "prices.csv")}),
        ("POST", "/admin/prices/import/confirm", {"content": "YQ==", "accept": "0" * 64}),
    ]
    for method, url, data in requests:
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data={**data, "csrf_token": token}, content_type="multipart/form-data")
        assert response.status_code == expected, (method, url, response.status_code)
        if role == "visitor":
            assert "/account/sign-in" in response.headers["Location"]
        assert "405.46" not in response.get_data(as_text=True)  # no price list leaks out
    assert state(app, packs[60]) == (40546, 1, True)
    assert state(app, packs[90]) == (59568, 1, True)
    assert ids(app)[1] == packs
    [change] = changes(app)
    assert change.cancelled_at is None and change.applied_at is None
