"""Fill 100,000 prescriptions and print the review queue page's server time and SQL statement count.

Usage: .venv/bin/python bench/prescription_queue.py [--count 100000]
Runs against a temporary SQLite file, or DATABASE_URL (e.g. a scratch PostgreSQL database) if set.
Most prescriptions are decided (approved or rejected), as in a shop that has run for a while; a few
thousand wait. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SHOP_INSTANCE_PATH", tempfile.mkdtemp(prefix="shop-bench-"))
os.environ.setdefault("SHOP_CONFIG", "testing")

import sqlalchemy as sa
from flask_migrate import upgrade

from shop import create_app
from shop.accounts import passwords, secret_box
from shop.accounts.models import User
from shop.catalog.demo import load_demo_catalog
from shop.extensions import db
from shop.prescriptions.models import Prescription, PrescriptionFile

PASSWORD = "benchmark passphrase 2026"


def fill(count: int, waiting: int) -> None:
    password_hash = passwords.hash_password(PASSWORD)
    customers = [User(email=f"c{n}@bench.example", password_hash=password_hash, legal_name=f"Customer {n}",
                      date_of_birth=dt.date(1980, 1, 1)) for n in range(500)]
    pharmacist = User(email="rph@bench.example", password_hash=password_hash, legal_name="Bench Pharmacist",
                      role="pharmacist", totp_enabled=True)
    db.session.add_all([*customers, pharmacist])
    db.session.commit()
    pharmacist.totp_secret = secret_box.seal(pharmacist.id, "JBSWY3DPEHPK3PXPBENCHSECRET2FA7Q")
    db.session.commit()
    start = dt.datetime(2025, 1, 1)
    rows, files = [], []
    for n in range(count):
        status = "uploaded" if n >= count - waiting else ("approved" if n % 3 else "rejected")
        rows.append({"customer_id": customers[n % 500].id, "status": status,
                     "created_at": start + dt.timedelta(minutes=5 * n), "customer_note": "",
                     "rejection_note": "", "dispense_as_written": False, "quantity_dispensed": 0,
                     "quantity_reserved": 0})
    for offset in range(0, count, 5000):
        db.session.execute(sa.insert(Prescription), rows[offset:offset + 5000])
    ids = db.session.scalars(sa.select(Prescription.id)).all()
    for pid in ids:
        files.append({"prescription_id": pid, "position": 0, "storage_key": f"k{pid}", "sha256": "0" * 64,
                      "size": 1, "content_type": "image/png", "pages": 1, "original_name": "",
                      "created_at": start})
    for offset in range(0, len(files), 5000):
        db.session.execute(sa.insert(PrescriptionFile), files[offset:offset + 5000])
    db.session.commit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--waiting", type=int, default=2_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_ENABLED": False})
    with app.app_context():
        upgrade()
        load_demo_catalog()
        began = time.perf_counter()
        fill(args.count, args.waiting)
        print(f"filled {args.count:,} prescriptions ({args.waiting:,} waiting) in "
              f"{time.perf_counter() - began:.1f} s on {db.engine.dialect.name}")
        engine = db.engine

    client = app.test_client()
    page = client.get("/account/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/account/sign-in", data={"email": "rph@bench.example", "password": PASSWORD,
                                          "csrf_token": token})
    import pyotp

    page = client.get("/account/sign-in/verify").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    client.post("/account/sign-in/verify", data={"code": pyotp.TOTP("JBSWY3DPEHPK3PXPBENCHSECRET2FA7Q").now(),
                                                 "csrf_token": token})

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    def measure(url: str, repeats: int = 20) -> tuple[float, float, int]:
        client.get(url)
        timings = []
        for i in range(repeats):
            if i == 0:
                sa.event.listen(engine, "before_cursor_execute", count)
            began = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - began) * 1000)
            if i == 0:
                sa.event.remove(engine, "before_cursor_execute", count)
            assert response.status_code == 200, response.status_code
        return statistics.median(timings), max(timings), len(statements)

    first = client.get("/pharmacy/queue").get_data(as_text=True)
    cursor = re.search(r'after=([^"&]+)', first).group(1)
    print(f"{'page':40} {'median ms':>10} {'max ms':>8} {'SQL':>5}")
    for label, url in (("queue, first page", "/pharmacy/queue"),
                       ("queue, second page (keyset)", f"/pharmacy/queue?after={cursor}")):
        statements.clear()
        median, worst, sql = measure(url)
        print(f"{label:40} {median:>10.1f} {worst:>8.1f} {sql:>5}")


if __name__ == "__main__":
    main()
