"""The audit log as an admin reads it: plain words, records by name, money as money, one row per sign-in,
filters by kind of action, the raw record one click away, and a fixed number of queries per page."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import User
from shop.admin import audit_view, prices
from shop.audit import AuditEvent, record
from shop.catalog.models import Package, Product, Strength
from shop.extensions import db
from shop.prescriptions.models import Prescription
from tests.conftest import TEST_PASSWORD, csrf_token, sign_in


class _LogParser(HTMLParser):
    """The log table's rows as {column: text} (the raw records apart), and each row's raw records."""

    COLUMNS = ("When", "Who", "What", "About", "Details", "From")

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.raw: list[list[dict]] = []
        self._cell: list[str] | None = None
        self._cells: list[str] = []
        self._in_details = self._in_pre = False
        self._pre: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._cells, self._raw_row = [], []
        elif tag in ("td", "th") and self._cells is not None:
            self._cell = []
        elif tag == "li" and self._cell is not None:
            self._cell.append(" ")
        elif tag == "details":
            self._in_details = True
        elif tag == "pre":
            self._in_pre, self._pre = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and len(self._cells) == len(self.COLUMNS) and self._cells[0] != "When (UTC)":
            self.rows.append(dict(zip(self.COLUMNS, self._cells, strict=True)))
            self.raw.append(self._raw_row)
        elif tag == "details":
            self._in_details = False
        elif tag == "pre":
            self._in_pre = False
            self._raw_row.append(json.loads("".join(self._pre)))

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self._pre.append(data)
        elif self._cell is not None and not self._in_details:
            self._cell.append(data)


def log(client: FlaskClient, query: str = "") -> _LogParser:
    response = client.get(f"/admin/audit{query}")
    assert response.status_code == 200
    parser = _LogParser()
    parser.feed(response.get_data(as_text=True))
    return parser


def naltrexone_package(units: int) -> Package:
    return db.session.scalars(sa.select(Package).join(Strength).join(Product).where(
        Product.slug == "naltrexone", Strength.slug == "50-mg", Package.units == units)).one()


@pytest.fixture
def admin(signed_in: Callable[[str], FlaskClient]) -> FlaskClient:
    return signed_in("admin")


def test_a_price_change_reads_in_plain_words_with_the_package_named_and_money_as_money(
        app: Flask, admin: FlaskClient, users: dict[str, int]) -> None:
    with app.app_context():
        package = naltrexone_package(60)
        package_id, strength_id = package.id, package.strength_id
        actor = db.session.get(User, users["admin"])
        prices.save_prices(strength_id, [prices.PriceEdit(package_id, "399.00", 1)], actor,
                           reason="Supplier price rise")
        db.session.remove()
    page = log(admin, "?kind=prices")
    [row] = page.rows
    assert (row["Who"], row["What"], row["About"]) == (
        "admin@example.com (admin)", "Changed a price", "Naltrexone 50 mg, pack of 60")
    assert row["Details"] == "Price: $405.46 → $399.00 Reason: Supplier price rise"
    assert "cents" not in row["Details"] and "price.changed" not in str(row)
    # The stored record is one click away, as it was written.
    [raw] = page.raw
    assert raw[0]["action"] == "price.changed" and raw[0]["object_id"] == str(package_id)
    assert raw[0]["details"]["old_price_cents"] == 40546 and raw[0]["details"]["new_price_cents"] == 39900


def test_a_sign_in_with_a_second_step_is_one_row(app: Flask, admin: FlaskClient) -> None:
    """The password step and the success are two records; the log shows the success and keeps the
    password step's record in its raw records. A password step never completed keeps its own row."""
    halfway = app.test_client()
    response = halfway.post("/account/sign-in", data={
        "email": "admin@example.com", "password": TEST_PASSWORD,
        "csrf_token": csrf_token(halfway)})
    assert "/sign-in/verify" in response.headers["Location"]  # stops before the second step

    page = log(admin, "?kind=sign-in")
    assert [row["What"] for row in page.rows] == [
        "Password accepted; the second step was not completed", "Signed in"]
    assert (page.rows[1]["About"], page.rows[1]["Details"]) == (
        "their own account", "With: password and authenticator code")
    assert [r["action"] for r in page.raw[1]] == ["sign_in.password_accepted", "sign_in.succeeded"]
    with app.app_context():
        steps = db.session.scalar(sa.select(sa.func.count()).where(
            AuditEvent.action == "sign_in.password_accepted"))
    assert steps == 2  # both password steps are kept in the log itself

    # Asked for by its code, every password step is listed.
    assert len(log(admin, "?action=sign_in.password_accepted").rows) == 2


def test_the_log_filters_by_kind_of_action(app: Flask, admin: FlaskClient, users: dict[str, int]) -> None:
    sign_in(app.test_client(), app, "customer@example.com", "a wrong password here")
    with app.app_context():
        package = naltrexone_package(90)
        actor = db.session.get(User, users["admin"])
        prices.save_prices(package.strength_id, [prices.PriceEdit(package.id, "580.00", 1)], actor)
        record("stock.threshold_changed", object_type="strength", object_id=package.strength_id, actor=actor,
               before=5, after=3)
        db.session.commit()
        db.session.remove()
    assert {row["What"] for row in log(admin, "?kind=sign-in").rows} == {"Signed in", "Sign-in failed"}
    assert [row["What"] for row in log(admin, "?kind=prices").rows] == ["Changed a price"]
    [stock] = log(admin, "?kind=stock").rows
    assert (stock["What"], stock["About"], stock["Details"]) == (
        "Changed a low-stock threshold", "Naltrexone 50 mg", "Setting: 5 → 3")
    assert len(log(admin, "?kind=nosuch").rows) == 4  # an unknown kind filters nothing out
    assert log(admin, "?kind=orders").rows == []


def test_a_prescription_names_its_patient_for_an_admin_only(
        app: Flask, admin: FlaskClient, users: dict[str, int]) -> None:
    with app.app_context():
        prescription = Prescription(customer_id=users["customer"], status="uploaded")
        db.session.add(prescription)
        db.session.flush()
        record("prescription.claimed", object_type="prescription", object_id=prescription.id,
               actor=db.session.get(User, users["pharmacist"]))
        db.session.commit()
        rx = prescription.id
        hidden = audit_view.page(audit_view.Filters(kind="prescriptions"), None, currency="USD",
                                 may_see_patients=False)
        assert [e.about for e in hidden.entries] == [f"prescription #{rx}"]
        db.session.remove()
    [row] = log(admin, "?kind=prescriptions").rows
    assert (row["What"], row["About"]) == ("Claimed a prescription for review", f"prescription #{rx} of Customer")


def test_records_gone_and_unknown_actions_still_read_plainly(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        record("package.retired", object_type="package", object_id=999999, units=90)
        record("monograph.dosing_moved", object_type="monograph", object_id=999999, direction="up")
        record("order.shipped", object_type="order", object_id="not-a-number", from_status="released")
        record("bulk.some_event", n=1)
        # an id beyond PostgreSQL's integer must not reach the IN list of the naming query
        record("package.retired", object_type="package", object_id="999999999999999999", units=90)
        db.session.commit()
    rows = log(admin).rows[:5]
    assert [(r["What"], r["About"]) for r in rows] == [
        ("Retired a package size", "package #999999999999999999 (no longer exists)"),
        ("Bulk: some event", "—"),
        ("Order moved to “Shipped”", "order #not-a-number (no longer exists)"),
        ("Moved a dosing row of a monograph", "monograph #999999 (no longer exists)"),
        ("Retired a package size", "package #999999 (no longer exists)"),
    ]
    assert rows[2]["Details"] == "From status: Released by our pharmacist"


def test_a_page_costs_the_same_queries_however_many_records_it_names(
        app: Flask, admin: FlaskClient, users: dict[str, int], count_statements: Callable) -> None:
    def add_events(n: int) -> None:
        with app.app_context():
            packages = db.session.scalars(sa.select(Package).limit(n)).all()
            for i in range(n):
                record("price.changed", object_type="package", object_id=packages[i % len(packages)].id,
                       old_price_cents=100 + i, new_price_cents=200 + i)
                record("user.role_changed", object_type="user", object_id=users["customer"],
                       old_role="customer", new_role="pharmacist")
                record("catalog.strength_updated", object_type="strength",
                       object_id=packages[i % len(packages)].strength_id)
            db.session.commit()

    def statements() -> int:
        with count_statements() as counter:
            assert admin.get("/admin/audit").status_code == 200
        return counter.count

    add_events(2)
    few = statements()  # 6 entries and the admin's sign-in
    add_events(20)  # 60 more entries: a full page of 50, naming many packages and strengths
    many = statements()
    assert len(log(admin).rows) == audit_view.PAGE_SIZE
    assert many <= few <= 10


def test_each_success_folds_only_its_own_accounts_password_step(app: Flask, users: dict[str, int]) -> None:
    with app.app_context():
        admin, pharmacist = db.session.get(User, users["admin"]), db.session.get(User, users["pharmacist"])
        for action, actor, details in [
                ("sign_in.password_accepted", admin, {}), ("sign_in.password_accepted", pharmacist, {}),
                ("sign_in.succeeded", pharmacist, {"method": "recovery_code"}),
                ("sign_in.succeeded", admin, {"method": "totp"}), ("sign_in.password_accepted", admin, {})]:
            record(action, object_type="user", object_id=actor.id, actor=actor, **details)
        db.session.commit()
        shown = audit_view.page(audit_view.Filters(kind="sign-in"), None, currency="USD", may_see_patients=True)
        assert [(e.event.actor_email, e.words, e.facts) for e in shown.entries] == [
            ("admin@example.com", "Password accepted; the second step was not completed", []),
            ("admin@example.com", "Signed in", [("With", "password and authenticator code")]),
            ("pharmacist@example.com", "Signed in", [("With", "password and a recovery code")])]
        assert [[json.loads(raw)["actor_email"] for raw in e.raw] for e in shown.entries] == [
            ["admin@example.com"], ["admin@example.com"] * 2, ["pharmacist@example.com"] * 2]


@pytest.mark.parametrize("query", ["?to=9999-12-31", "?from=0001-01-01", "?kind=%25", "?actor=%25_",
                                   "?action=" + "x" * 10_000, "?before=99999999999999999999"])
def test_odd_filters_are_answered_not_failed(admin: FlaskClient, query: str) -> None:
    assert admin.get(f"/admin/audit{query}").status_code == 200


def test_every_action_the_shop_records_has_plain_words_and_a_kind() -> None:
    """Each literal action code passed to audit.record() in shop/ is worded and filed under a kind (the
    built codes, such as order.<status>, are worded by their family in action_words)."""
    import ast
    from pathlib import Path

    codes: set[str] = set()
    for path in Path(audit_view.__file__).parents[1].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "record"
                    and getattr(node.func.value, "id", None) == "audit" and node.args
                    and not isinstance(node.args[0], ast.JoinedStr)):
                codes |= {c.value for c in ast.walk(node.args[0])
                          if isinstance(c, ast.Constant) and isinstance(c.value, str) and "." in c.value}
    assert len(codes) > 50
    assert sorted(c for c in codes if c not in audit_view.ACTION_WORDS) == []
    assert sorted(c for c in codes if audit_view.kind_of(c) is None) == []
    assert audit_view.action_words("order.released") == "Order moved to “Released by our pharmacist”"
    assert audit_view.action_words("prescription.file_downloaded") == "Downloaded a prescription file"
