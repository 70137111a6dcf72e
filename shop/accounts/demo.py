"""Demo accounts for `make run` (development only): one of each role.

Their passwords are public (README and the sign-in page in development), so they are never created
outside DEMO_MODE. The staff accounts have a fixed TOTP secret so a demo can show the second factor;
the sign-in page shows the current code in development.
"""

from __future__ import annotations

import datetime as dt

import pyotp
import sqlalchemy as sa
from flask import current_app

from shop.accounts import passwords, secret_box
from shop.accounts.models import Address, ProfileEntry, User
from shop.database import begin_write
from shop.extensions import db

DEMO_TOTP_SECRET = "JBSWY3DPEHPK3PXPDEMOSHOP2FA7Q4XZ"  # noqa: S105 - public demo value
DEMO_ACCOUNTS = [
    {"email": "customer@demo.example", "password": "demo-customer-password", "role": "customer",
     "legal_name": "Alex Morgan", "date_of_birth": dt.date(1984, 5, 17)},
    {"email": "pharmacist@demo.example", "password": "demo-pharmacist-password", "role": "pharmacist",
     "legal_name": "Dana Whitfield", "date_of_birth": dt.date(1979, 2, 3)},
    {"email": "admin@demo.example", "password": "demo-admin-password", "role": "admin",
     "legal_name": "Sam Okafor", "date_of_birth": dt.date(1975, 11, 29)},
]


def load_demo_accounts() -> int:
    """Create the demo accounts that are missing; returns how many were added."""
    begin_write()
    if not current_app.config.get("DEMO_MODE"):
        raise RuntimeError("demo accounts exist only in development (DEMO_MODE)")
    existing = set(db.session.scalars(sa.select(User.email)))
    added = 0
    for spec in DEMO_ACCOUNTS:
        if spec["email"] in existing:
            continue
        user = User(
            email=spec["email"],
            password_hash=passwords.hash_password(spec["password"]),
            legal_name=spec["legal_name"],
            date_of_birth=spec["date_of_birth"],
            role=spec["role"],
            privacy_consent_at=dt.datetime(2026, 1, 1),
        )
        if not user.is_staff:
            user.addresses = [Address(recipient=spec["legal_name"], line1="42 Alder Street",
                                      city="Portland", state="OR", postal_code="97205",
                                      is_default=True)]
            user.profile_entries = [ProfileEntry(kind="allergy", text="Penicillin"),
                                    ProfileEntry(kind="condition", text="Alcohol use disorder")]
        db.session.add(user)
        if user.is_staff:
            db.session.flush()  # the sealed secret is bound to the user's id
            user.totp_secret, user.totp_enabled = secret_box.seal(user.id, DEMO_TOTP_SECRET), True
        added += 1
    db.session.commit()
    return added


def demo_account_hints() -> list[dict[str, str]]:
    code = pyotp.TOTP(DEMO_TOTP_SECRET).now()
    return [
        {"email": s["email"], "password": s["password"], "role": s["role"],
         "code": code if s["role"] != "customer" else ""}
        for s in DEMO_ACCOUNTS
    ]
