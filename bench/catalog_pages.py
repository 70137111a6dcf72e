"""Print server time and SQL statement count of the catalog pages, on a small and a large catalog.

Usage: .venv/bin/python bench/catalog_pages.py [--products 500]
Runs against a temporary SQLite file (or DATABASE_URL if set). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SHOP_INSTANCE_PATH", tempfile.mkdtemp(prefix="shop-bench-"))

import sqlalchemy as sa
from flask_migrate import upgrade

from shop import create_app
from shop.catalog.demo import load_demo_catalog
from shop.catalog.models import Package, Product, ProductAlias, Strength
from shop.extensions import db

PAGES = ["/", "/products?q=naltrexone", "/products/naltrexone", "/monographs/naltrexone"]


def add_products(count: int) -> None:
    for p in range(count):
        product = Product(slug=f"bench-{p}", name=f"Bench {p:05d}", generic_name=f"bench {p}")
        product.aliases = [ProductAlias(kind="brand", name=f"B{p}", search_key=f"b{p}")]
        for s in range(4):
            strength = Strength(slug=f"{s}", label=f"{s} mg", amount=s + 1, unit="mg",
                                dosage_form="tablet", position=s, stock_on_hand=500)
            strength.packages = [Package(units=30 * (k + 1), price_cents=3000 * (k + 1) - k * 100)
                                 for k in range(3)]
            product.strengths.append(strength)
        db.session.add(product)
    db.session.commit()


def measure(app, url: str, repeats: int = 30) -> tuple[float, int]:
    client = app.test_client()
    client.get(url)
    statements = 0

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    timings = []
    with app.app_context():
        engine = db.engine
    for i in range(repeats):
        if i == 0:
            sa.event.listen(engine, "before_cursor_execute", count)
        start = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - start)
        if i == 0:
            sa.event.remove(engine, "before_cursor_execute", count)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(timings) * 1000, statements


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=500)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        load_demo_catalog()
    print(f"database: {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}")
    print(f"{'page':32} {'products':>9} {'median ms':>10} {'SQL':>5}")
    for extra in (0, args.products):
        if extra:
            with app.app_context():
                add_products(extra)
        with app.app_context():
            total = db.session.scalar(sa.select(sa.func.count()).select_from(Product))
        for page in PAGES:
            ms, statements = measure(app, page)
            print(f"{page:32} {total:>9} {ms:>10.1f} {statements:>5}")


if __name__ == "__main__":
    main()
