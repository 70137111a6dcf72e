"""The one CSV reader refuses a cell holding a control character (a NUL, which PostgreSQL refuses in
text, a tab, a line break), naming the line and the column, for every import."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.admin import csv_files
from shop.audit import AuditEvent
from shop.catalog.models import Package
from shop.extensions import db
from shop.inventory.models import StockLot, StockMovement
from tests.conftest import csrf_token

LAYOUT = csv_files.CsvLayout(columns=("name", "note"), max_bytes=1024, max_rows=10)
STOCK_HEADER = "product_slug,strength_slug,lot_number,expiry_date,units_remaining,supplier_reference\n"
IN_A_YEAR = (dt.date.today() + dt.timedelta(days=365)).isoformat()


@pytest.mark.parametrize(("text", "code"), [
    ("name,note\nA,ok\nB,PO\x009\n", "U+0000"), ("name,note\nA,ok\nB,\"PO\t9\"\n", "U+0009"),
    ("name,note\nA,ok\nB,\"PO\n9\"\n", "U+000A"), ("name,note\nA,ok\nB,PO\x1b9\n", "U+001B"),
    ("name,note\nA,ok\nB,PO\x7f9\n", "U+007F"), ("name,note\nA,ok\nB,PO\x859\n", "U+0085"),
])
def test_a_cell_with_a_control_character_is_a_problem_of_its_line(text: str, code: str) -> None:
    first, second = csv_files.read_csv(text.encode(), LAYOUT)
    assert first.problem is None and second.line in (3, 4)
    assert second.problem == (f"note holds a control character ({code}); a cell may hold only printable "
                              "text, without tabs or line breaks.")


def test_spaces_and_tabs_around_a_cell_are_trimmed_not_refused() -> None:
    (row,) = csv_files.read_csv(b"name,note\n\tA ,\" PO 9\t\"\n", LAYOUT)
    assert row.problem is None and row.cells == {"name": "A", "note": "PO 9"}


def _upload(client: FlaskClient, url: str, page: str, data: bytes, filename: str) -> tuple[int, str]:
    response = client.post(url, content_type="multipart/form-data", data={
        "csrf_token": csrf_token(client, page), "file": (io.BytesIO(data), filename)})
    return response.status_code, response.get_data(as_text=True)


def _counts() -> tuple[int, ...]:
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                 for model in (StockLot, StockMovement, AuditEvent))


@pytest.mark.parametrize("cell", ["PO\x009", "\x00", "PO\x019"])
def test_a_stock_import_with_a_nul_in_a_cell_lists_the_line_and_imports_nothing(
        app: Flask, signed_in: Callable[[str], FlaskClient], cell: str) -> None:
    admin = signed_in("admin")
    with app.app_context():
        before = _counts()
    text = STOCK_HEADER + f"naltrexone,50-mg,NX-9,{IN_A_YEAR},200,{cell}\n"
    status, page = _upload(admin, "/admin/stock/import", "/admin/stock/import", text.encode(), "stock.csv")
    assert status == 422 and "supplier_reference holds a control character" in page
    assert '<th scope="row">2</th>' in page
    with app.app_context():
        assert _counts() == before


@pytest.mark.parametrize("line", ["naltrexone,50-mg,60,4\x0005.46,true", "naltrex\x00one,50-mg,60,405.46,true",
                                  "naltrexone,50-mg,60,405.46,tr\x00ue"])
def test_a_price_import_with_a_nul_in_a_cell_lists_the_line_and_changes_nothing(
        app: Flask, signed_in: Callable[[str], FlaskClient], line: str) -> None:
    admin = signed_in("admin")
    with app.app_context():
        prices = list(db.session.scalars(sa.select(Package.price_cents).order_by(Package.id)))
        before = _counts()
    text = "product_slug,strength_slug,units,price,active\n" + line + "\n"
    status, page = _upload(admin, "/admin/prices/import", "/admin/prices", text.encode(), "prices.csv")
    assert status == 422 and "holds a control character (U+0000)" in page
    with app.app_context():
        assert list(db.session.scalars(sa.select(Package.price_cents).order_by(Package.id))) == prices
        assert _counts() == before
