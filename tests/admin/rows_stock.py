"""Access-matrix rows for admin stock pages and CSV (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in)."""

from __future__ import annotations

from tests.access_roles import ADMIN, but

# POSTs carry data an admin's request refuses (422), so the rows change nothing.
ROWS: list[tuple] = [
    ("admin_stock.index", "GET", "/admin/stock", None, ADMIN),
    ("admin_stock.strength", "GET", "/admin/stock/strengths/{strength}", None, ADMIN),
    ("admin_stock.receive", "POST", "/admin/stock/strengths/{strength}/receive", {}, but(ADMIN, admin=422)),
    ("admin_stock.adjust", "POST", "/admin/stock/strengths/{strength}/adjust", {}, but(ADMIN, admin=422)),
    ("admin_stock.threshold", "POST", "/admin/stock/strengths/{strength}/threshold",
     {"low_stock_units": "-1"}, but(ADMIN, admin=422)),
    ("admin_stock.ledger", "GET", "/admin/stock/ledger?lot={lot}", None, ADMIN),
    ("admin_stock.low_stock", "GET", "/admin/stock/low", None, ADMIN),
    ("admin_stock.expiring", "GET", "/admin/stock/expiring", None, ADMIN),
    ("admin_stock.export", "GET", "/admin/stock/export.csv", None, ADMIN),
    ("admin_stock.import_stock", "GET", "/admin/stock/import", None, ADMIN),
    ("admin_stock.import_stock", "POST", "/admin/stock/import", {}, but(ADMIN, admin=422)),
]
