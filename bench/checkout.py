"""Print how long placing an order takes, alone and with buyers racing for the same stock.

Usage: .venv/bin/python bench/checkout.py [--orders 200] [--threads 8]
Runs against a temporary SQLite file (or DATABASE_URL if set, e.g. a PostgreSQL database you can
empty). Each order: a customer with an address adds one pack of the over-the-counter thiamine and
places the order (gate, snapshot, stock allocation, ledger, audit, outbox) in one transaction.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SHOP_INSTANCE_PATH", tempfile.mkdtemp(prefix="shop-bench-"))

import sqlalchemy as sa
from flask_migrate import upgrade

from shop import create_app
from shop.accounts.models import Address, User
from shop.cart import services as cart
from shop.catalog.demo import load_demo_catalog
from shop.catalog.models import Package, Strength
from shop.extensions import db
from shop.inventory import services as inventory
from shop.inventory.models import StockLot
from shop.orders import services as orders


def make_customers(count: int) -> list[tuple[int, int]]:
    people = []
    for n in range(count):
        user = User(email=f"bench{n}@example.com", password_hash="x", legal_name=f"Bench {n}",
                    role="customer")
        user.addresses = [Address(recipient="B", line1="1 Main St", city="Portland", state="OR",
                                  postal_code="97204", is_default=True)]
        db.session.add(user)
        people.append(user)
    db.session.commit()
    return [(u.id, u.addresses[0].id) for u in people]


def buy(app, customer_id: int, address_id: int, package_id: int, token: str) -> float | None:
    with app.app_context():
        customer = db.session.get(User, customer_id)
        start = time.perf_counter()
        try:
            cart.add(customer, package_id)
            orders.place_order(customer, address_id, token)
        except (orders.CheckoutError, cart.CartError):
            db.session.rollback()
            return None
        finally:
            db.session.remove()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{os.environ['SHOP_INSTANCE_PATH']}/bench.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        load_demo_catalog()
        package = db.session.scalars(sa.select(Package).join(Strength).where(
            Strength.slug == "100-mg", Package.units == 100)).one()
        package_id, strength_id = package.id, package.strength_id
        strength = package.strength
        later = dt.date.today() + dt.timedelta(days=400)
        # Enough for every buyer of the sequential run.
        inventory.add_lot(strength, lot_number="BENCH-1", expiry_date=later, units=100 * args.orders)
        db.session.commit()
        people = make_customers(args.orders + args.threads * 4)
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}")

    sequential = [buy(app, c, a, package_id, f"seq-{c}") for c, a in people[:args.orders]]
    times = [t * 1000 for t in sequential if t is not None]
    print(f"one buyer at a time: {len(times)} orders, median {statistics.median(times):.1f} ms, "
          f"p95 {sorted(times)[int(len(times) * 0.95) - 1]:.1f} ms")

    # Racing: 4 x threads buyers for stock enough for `threads` orders.
    with app.app_context():
        # Only `threads` packs left to sell: earlier lots count as expired, one new lot covers what is
        # already promised plus those packs.
        db.session.execute(sa.update(StockLot).where(StockLot.strength_id == strength_id)
                           .values(expiry_date=dt.date.today() - dt.timedelta(days=1)))
        strength = db.session.get(Strength, strength_id)
        inventory.add_lot(strength, lot_number="BENCH-2", expiry_date=later,
                          units=strength.stock_allocated + 100 * args.threads)
        db.session.commit()
    racers = people[args.orders:]
    results: list[float | None] = []
    lock = threading.Lock()

    def run(c: int, a: int) -> None:
        outcome = buy(app, c, a, package_id, f"race-{c}")
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=person) for person in racers]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    won = [t * 1000 for t in results if t is not None]
    with app.app_context():
        left = db.session.get(Strength, strength_id)
        sellable = inventory.sellable_units([strength_id])[strength_id]
        print(f"{len(racers)} buyers racing for {args.threads} packs: {len(won)} orders placed in "
              f"{wall * 1000:.0f} ms, slowest winner {max(won, default=0):.0f} ms; available afterwards "
              f"{sellable - left.stock_allocated} units")


if __name__ == "__main__":
    main()
