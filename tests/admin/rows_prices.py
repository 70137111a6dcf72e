"""Access-matrix rows for the admin price editor (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in).

Only admins get in. An admin's POSTs here change nothing: a preview (no "save" button) renders the table,
an empty add-package form is refused, a retire or restore without the version it was read at is a
malformed request, a missing scheduled change is 404, and an import (or its confirmation) without a
file is refused.
"""

from __future__ import annotations

from tests.access_roles import ADMIN, but

ROWS: list[tuple] = [
    ("admin_prices.index", "GET", "/admin/prices", None, ADMIN),
    ("admin_prices.edit", "GET", "/admin/prices/strengths/{strength}", None, ADMIN),
    ("admin_prices.edit", "POST", "/admin/prices/strengths/{strength}", {"preview": "1"}, ADMIN),
    ("admin_prices.add_package", "POST", "/admin/prices/strengths/{strength}/packages", {},
     but(ADMIN, admin=422)),
    ("admin_prices.retire_package", "POST", "/admin/prices/packages/{package}/retire", {},
     but(ADMIN, admin=400)),
    ("admin_prices.restore_package", "POST", "/admin/prices/packages/{package}/restore", {},
     but(ADMIN, admin=400)),
    ("admin_prices.cancel_change", "POST", "/admin/prices/changes/999999/cancel", {}, but(ADMIN, admin=404)),
    ("admin_prices.export_csv", "GET", "/admin/prices/export.csv", None, ADMIN),
    ("admin_prices.import_csv", "POST", "/admin/prices/import", {}, but(ADMIN, admin=422)),
    ("admin_prices.import_confirm", "POST", "/admin/prices/import/confirm", {}, but(ADMIN, admin=422)),
]
