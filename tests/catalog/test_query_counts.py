"""The catalog and product pages run a fixed number of SQL statements, whatever the catalog's size."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from shop.catalog.models import Package, Product, ProductAlias, Strength
from shop.extensions import db


def grow_catalog(app: Flask, products: int, strengths: int, packages: int) -> None:
    """Add products with many strengths and packages, and more of both to naltrexone."""
    with app.app_context():
        for p in range(products):
            product = Product(
                slug=f"extra-{p}", name=f"Extra {p}", generic_name=f"extra {p}", prescription_only=True
            )
            product.aliases = [ProductAlias(kind="brand", name=f"Brand{p}", search_key=f"brand{p}")]
            for s in range(strengths):
                strength = Strength(
                    slug=f"{s}-mg", label=f"{s} mg", amount=s + 1, unit="mg", dosage_form="tablet",
                    position=s, stock_on_hand=1000,
                )
                strength.packages = [
                    Package(units=10 * (k + 1), price_cents=1000 * (k + 1)) for k in range(packages)
                ]
                product.strengths.append(strength)
            db.session.add(product)
        naltrexone = db.session.query(Product).filter_by(slug="naltrexone").one()
        for s in range(strengths):
            strength = Strength(
                slug=f"extra-{s}", label=f"{s} mg", amount=s + 1, unit="mg", dosage_form="tablet",
                position=10 + s, stock_on_hand=50,
            )
            strength.packages = [
                Package(units=7 * (k + 1), price_cents=700 * (k + 1)) for k in range(packages)
            ]
            naltrexone.strengths.append(strength)
        db.session.commit()


def statements_for(client: FlaskClient, count_statements: Callable, url: str) -> int:
    client.get(url)  # warm up: first-request work must not hide in the measurement
    with count_statements() as counter:
        response = client.get(url)
    assert response.status_code == 200
    return counter.count


PAGES = ["/", "/products", "/products?page=1", "/products?q=naltrexone", "/products/naltrexone",
         "/products/naltrexone?strength=4-5-mg", "/monographs/naltrexone", "/monographs"]


def test_statement_counts_do_not_grow_with_the_catalog(
    app: Flask, client: FlaskClient, count_statements: Callable
) -> None:
    before = {url: statements_for(client, count_statements, url) for url in PAGES}
    grow_catalog(app, products=12, strengths=5, packages=4)
    after = {url: statements_for(client, count_statements, url) for url in PAGES}
    assert after == before
    # And the numbers are small: one query per level of the product tree, plus the unexpired stock
    # of the strength shown.
    assert before["/products/naltrexone"] <= 6
    assert before["/"] <= 6  # the count of all products for the pages, then one page of them


def test_the_catalog_is_paged(app: Flask, client: FlaskClient) -> None:
    grow_catalog(app, products=30, strengths=1, packages=1)  # 30 + the 4 demo products
    first = client.get("/products").get_data(as_text=True)
    second = client.get("/products?page=2").get_data(as_text=True)

    assert first.count('class="product-card"') == 24 and second.count('class="product-card"') == 10
    assert "Page 1 of 2 (34 medicines)" in first and 'href="/products?page=2"' in first
    assert 'href="/products?page=1"' in second and "Next page" not in second
    assert "Acamprosate" in first and "Acamprosate" not in second  # by name, no product twice
    home = client.get("/").get_data(as_text=True)
    assert home.count('class="product-card"') == 24 and "See all 34 medicines" in home
    assert client.get("/products?page=3").status_code == 404
    assert client.get("/products?page=0").status_code == 404
    # Search results are paged the same way and keep the query.
    found = client.get("/products?q=extra").get_data(as_text=True)
    assert "30 medicines found." in found and 'href="/products?q=extra&amp;page=2"' in found
