"""Access-matrix rows for admin catalog and monograph editing (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in).

The admin's POSTs are harmless: empty forms are refused (422; the versioned forms carry a version, else
they are 400), deleting naltrexone or its 50 mg strength is refused because the stock ledger refers to them
(302 back with a message), each deactivation is undone by the activation row after it; a brand name and a
safety entry of naltrexone (at version 1, as loaded) are removed (only the admin's run gets that far, on its
own fresh database). Uses, dosing rows and questions have no placeholder: their rows name a missing id (404),
after the pages that add them.
"""

from __future__ import annotations

from tests.access_roles import ADMIN, but

BASE = "/admin/catalog"
REFUSED = but(ADMIN, admin=422)
REDIRECT = but(ADMIN, admin=302)
MISSING = but(ADMIN, admin=404)

ROWS: list[tuple] = [
    ("admin_catalog.index", "GET", f"{BASE}?q=ldn", None, ADMIN),
    ("admin_catalog.product_new", "GET", f"{BASE}/products/new", None, ADMIN),
    ("admin_catalog.product_new", "POST", f"{BASE}/products/new", {}, REFUSED),
    ("admin_catalog.product_edit", "GET", f"{BASE}/products/{{product}}", None, ADMIN),
    ("admin_catalog.product_edit", "POST", f"{BASE}/products/{{product}}", {"version": "1"}, REFUSED),
    ("admin_catalog.alias_add", "POST", f"{BASE}/products/{{product}}/aliases", {}, REFUSED),
    ("admin_catalog.alias_remove", "POST", f"{BASE}/products/{{product}}/aliases/{{alias}}/remove", {}, REDIRECT),
    ("admin_catalog.strength_new", "GET", f"{BASE}/products/{{product}}/strengths/new", None, ADMIN),
    ("admin_catalog.strength_new", "POST", f"{BASE}/products/{{product}}/strengths/new", {}, REFUSED),
    ("admin_catalog.strength_edit", "GET", f"{BASE}/strengths/{{strength}}", None, ADMIN),
    ("admin_catalog.strength_edit", "POST", f"{BASE}/strengths/{{strength}}", {}, REFUSED),
    ("admin_catalog.monograph_list", "GET", f"{BASE}/monographs", None, ADMIN),
    ("admin_catalog.monograph_edit", "GET", f"{BASE}/monographs/{{monograph}}", None, ADMIN),
    ("admin_catalog.section", "POST", f"{BASE}/monographs/{{monograph}}/sections/overview",
     {"action": "preview", "s-overview-title": "Overview", "s-overview-body": "**Preview**"}, ADMIN),
    ("admin_catalog.section", "POST", f"{BASE}/monographs/{{monograph}}/sections/overview",
     {"s-overview-version": "1"}, REFUSED),
    ("admin_catalog.safety_add", "POST", f"{BASE}/monographs/{{monograph}}/safety", {}, REFUSED),
    ("admin_catalog.safety_edit", "GET", f"{BASE}/monographs/{{monograph}}/safety/999999", None, MISSING),
    ("admin_catalog.safety_edit", "GET", f"{BASE}/monographs/{{monograph}}/safety/{{safety_entry}}", None, ADMIN),
    ("admin_catalog.safety_edit", "POST", f"{BASE}/monographs/{{monograph}}/safety/{{safety_entry}}",
     {"version": "1"}, REFUSED),
    ("admin_catalog.safety_remove", "POST", f"{BASE}/monographs/{{monograph}}/safety/{{safety_entry}}/remove",
     {"version": "1"}, REDIRECT),
    ("admin_catalog.review", "POST", f"{BASE}/monographs/{{monograph}}/review", {"review-version": "1"}, REFUSED),
    ("admin_catalog.monograph_new", "GET", f"{BASE}/monographs/new", None, ADMIN),
    ("admin_catalog.monograph_new", "POST", f"{BASE}/monographs/new", {}, REFUSED),
    ("admin_catalog.monograph_details", "POST", f"{BASE}/monographs/{{monograph}}/details",
     {"details-version": "1"}, REFUSED),
    *[row for kind in ("uses", "dosing", "faq") for row in (
        ("admin_catalog.row_new", "GET", f"{BASE}/monographs/{{monograph}}/{kind}/new", None, ADMIN),
        ("admin_catalog.row_new", "POST", f"{BASE}/monographs/{{monograph}}/{kind}/new", {}, REFUSED),
        ("admin_catalog.row_edit", "GET", f"{BASE}/monographs/{{monograph}}/{kind}/999999", None, MISSING),
        ("admin_catalog.row_edit", "POST", f"{BASE}/monographs/{{monograph}}/{kind}/999999", {}, MISSING),
        ("admin_catalog.row_move", "POST", f"{BASE}/monographs/{{monograph}}/{kind}/999999/move",
         {"direction": "up"}, MISSING),
        ("admin_catalog.row_remove", "POST", f"{BASE}/monographs/{{monograph}}/{kind}/999999/remove", {},
         MISSING),
    )],
    ("admin_catalog.row_new", "POST", f"{BASE}/monographs/{{monograph}}/faq/new",
     {"action": "preview", "question": "Q?", "answer": "**A**"}, ADMIN),
    ("admin_catalog.product_delete", "POST", f"{BASE}/products/{{product}}/delete", {}, REDIRECT),
    ("admin_catalog.strength_delete", "POST", f"{BASE}/strengths/{{strength}}/delete", {}, REDIRECT),
    ("admin_catalog.strength_deactivate", "POST", f"{BASE}/strengths/{{strength}}/deactivate", {}, REDIRECT),
    ("admin_catalog.strength_activate", "POST", f"{BASE}/strengths/{{strength}}/activate", {}, REDIRECT),
    ("admin_catalog.product_deactivate", "POST", f"{BASE}/products/{{product}}/deactivate", {}, REDIRECT),
    ("admin_catalog.product_activate", "POST", f"{BASE}/products/{{product}}/activate", {}, REDIRECT),
]
