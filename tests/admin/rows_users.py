"""Access-matrix rows for admin user management (see tests/test_access_matrix.py for the format and the
placeholders its `objects` fixture fills in).

Only the admin's run gets past the access rule, so its POSTs are chosen to leave every account as later
rows need it: refusals (an unknown role, the admin demoting or disabling themselves) answer 422, and the
customer is disabled and at once enabled again (both redirect back to the account page)."""

from __future__ import annotations

from tests.access_roles import ADMIN, but

ROWS: list[tuple] = [
    ("admin_users.index", "GET", "/admin/users?q=example&role=customer&status=active", None, ADMIN),
    ("admin_users.detail", "GET", "/admin/users/{customer_id}", None, ADMIN),
    ("admin_users.detail", "GET", "/admin/users/999999", None, but(ADMIN, admin=404)),
    ("admin_users.new", "GET", "/admin/users/new", None, ADMIN),
    ("admin_users.new", "POST", "/admin/users/new", {}, but(ADMIN, admin=422)),
    ("admin_users.set_role", "POST", "/admin/users/{pharmacist_id}/role", {"role": "superuser"},
     but(ADMIN, admin=422)),
    ("admin_users.set_role", "POST", "/admin/users/{admin_id}/role", {"role": "customer"},
     but(ADMIN, admin=422)),
    # The customer was never invited: nothing to resend (422), nothing sent.
    ("admin_users.resend_invitation", "POST", "/admin/users/{customer_id}/invitation", {},
     but(ADMIN, admin=422)),
    ("admin_users.disable", "POST", "/admin/users/{admin_id}/disable", {}, but(ADMIN, admin=422)),
    ("admin_users.disable", "POST", "/admin/users/{customer_id}/disable", {}, but(ADMIN, admin=302)),
    ("admin_users.enable", "POST", "/admin/users/{customer_id}/enable", {}, but(ADMIN, admin=302)),
]
