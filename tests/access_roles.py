"""Expected outcomes per role for the access matrix (tests/test_access_matrix.py).

Codes: 200 page, 302> a redirect to sign-in, 302 another redirect, 403 wrong role, 404 someone
else's object, 422 a form refused, 400 a request refused as malformed.
"""

from __future__ import annotations

ROLES = ("visitor", "customer", "other_customer", "pharmacist", "admin")
SIGN_IN = "302>"

PUBLIC = dict.fromkeys(ROLES, 200)
SIGNED_IN = {"visitor": SIGN_IN, "customer": 200, "other_customer": 200, "pharmacist": 200, "admin": 200}
CUSTOMER = {"visitor": SIGN_IN, "customer": 200, "other_customer": 200, "pharmacist": 403, "admin": 403}
OWN_OBJECT = {"visitor": SIGN_IN, "customer": 200, "other_customer": 404, "pharmacist": 403, "admin": 403}
ADMIN = {"visitor": SIGN_IN, "customer": 403, "other_customer": 403, "pharmacist": 403, "admin": 200}
PHARMACIST = {"visitor": SIGN_IN, "customer": 403, "other_customer": 403, "pharmacist": 200, "admin": 403}
SHOPPER = {"visitor": 200, "customer": 200, "other_customer": 200, "pharmacist": 403, "admin": 403}
VISITOR_ONLY = {"visitor": 200, "customer": 302, "other_customer": 302, "pharmacist": 302, "admin": 302}


STAFF = {"visitor": SIGN_IN, "customer": 403, "other_customer": 403, "pharmacist": 200, "admin": 200}


def but(base: dict, **changes: object) -> dict:
    return {**base, **changes}
