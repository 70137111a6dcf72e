"""Access-matrix rows for staff order pages (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in).

{order} is the customer's order awaiting payment (one pack of thiamine, over the counter), so every
action refuses harmlessly: release, ship, deliver and refund redirect back with a message (the status
does not allow them; no Stripe call is made), and cancel without a reason is a 422.
"""

from __future__ import annotations

from tests.access_roles import ADMIN, PHARMACIST, STAFF, but

ROWS: list[tuple] = [
    ("staff_orders.index", "GET", "/staff/orders", None, STAFF),
    ("staff_orders.detail", "GET", "/staff/orders/{order}", None, STAFF),
    ("staff_orders.detail", "GET", "/staff/orders/CW-NOSUCH", None, but(STAFF, pharmacist=404, admin=404)),
    ("staff_orders.release", "POST", "/staff/orders/{order}/release", {}, but(PHARMACIST, pharmacist=302)),
    ("staff_orders.release", "POST", "/staff/orders/CW-NOSUCH/release", {}, but(PHARMACIST, pharmacist=404)),
    ("staff_orders.ship", "POST", "/staff/orders/{order}/ship", {"carrier": "UPS", "tracking_number": "1Z"},
     but(STAFF, pharmacist=302, admin=302)),
    ("staff_orders.deliver", "POST", "/staff/orders/{order}/delivered", {}, but(STAFF, pharmacist=302, admin=302)),
    ("staff_orders.cancel", "POST", "/staff/orders/{order}/cancel", {"reason": ""},
     but(STAFF, pharmacist=422, admin=422)),
    ("staff_orders.refund", "POST", "/staff/orders/{order}/refund", {"amount": "1.00", "reason": "test"},
     but(ADMIN, admin=302)),
]
