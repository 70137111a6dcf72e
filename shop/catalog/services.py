"""Catalog queries. Each runs a fixed number of SQL statements whatever the catalog's size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from shop import money
from shop.catalog.models import Monograph, Product, ProductAlias, Strength, search_key
from shop.catalog.pricing import PackageRow, package_rows
from shop.database import LIKE_ESCAPE, contains_pattern
from shop.extensions import db

MAX_QUERY_LENGTH = 100
PAGE_SIZE = 24  # product cards per page of the catalog and of search results


@dataclass(frozen=True)
class StrengthPrice:
    """The per-pill prices of one strength's packages, lowest and highest, as the package table shows them."""

    strength: Strength
    lowest_per_unit_cents: int
    highest_per_unit_cents: int


@dataclass(frozen=True)
class ProductSummary:
    product: Product
    # Per strength, not one "from" for the product: a 4.5 mg capsule's price is no guide to the 50 mg
    # tablet's, which is what a search for its brand (ReVia) is after.
    strength_prices: list[StrengthPrice]
    currency: str


def strength_prices(product: Product) -> list[StrengthPrice]:
    """From the loaded tree: no SQL."""
    prices = []
    for strength in product.active_strengths:
        per_pill = [money.per_unit_cents(p.price_cents, p.units) for p in strength.active_packages]
        if per_pill:
            prices.append(StrengthPrice(strength, min(per_pill), max(per_pill)))
    return prices


@dataclass(frozen=True)
class ProductPage:
    product: Product
    strength: Strength | None
    rows: list[PackageRow]


def _with_catalog_tree(stmt: sa.Select) -> sa.Select:
    return stmt.options(
        selectinload(Product.strengths).selectinload(Strength.packages),
        selectinload(Product.aliases),
        joinedload(Product.monograph),
    )


@dataclass(frozen=True)
class ProductPageList:
    """One page of product cards, and where it sits among all of them."""

    items: list[ProductSummary]
    page: int
    pages: int
    total: int


class NoSuchPage(LookupError):
    pass


def _paged(stmt: sa.Select, currency: str, page: int, per_page: int) -> ProductPageList:
    """Two statements whatever the catalog's size: the count, then one page with its tree."""
    total = db.session.scalar(sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())) or 0
    pages = max(-(-total // per_page), 1)
    if page < 1 or page > pages:
        raise NoSuchPage(page)
    ordered = _with_catalog_tree(stmt).order_by(Product.name, Product.id)
    products = list(db.session.scalars(ordered.limit(per_page).offset((page - 1) * per_page)))
    return ProductPageList([ProductSummary(p, strength_prices(p), currency) for p in products],
                           page, pages, total)


def list_products(currency: str, page: int = 1, per_page: int = PAGE_SIZE) -> ProductPageList:
    """:raise NoSuchPage: page out of range."""
    return _paged(sa.select(Product).where(Product.active), currency, page, per_page)


def _normalised(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    # The SQL twin of search_key() for the common punctuation in drug names.
    return sa.func.lower(sa.func.replace(sa.func.replace(column, "-", " "), ".", " "))


def normalise_query(query: str) -> str:
    return search_key(query[:MAX_QUERY_LENGTH])


def search_products(query: str, currency: str, page: int = 1, per_page: int = PAGE_SIZE) -> ProductPageList:
    """Active products whose name, generic name, brand name or synonym contains the query,
    case-insensitively and ignoring hyphens ("low-dose" finds "low dose").

    :raise NoSuchPage: page out of range."""
    key = normalise_query(query)
    if not key:
        return ProductPageList([], 1, 1, 0)
    pattern = contains_pattern(key)
    alias_hit = (
        sa.select(ProductAlias.id)
        .where(ProductAlias.product_id == Product.id)
        .where(ProductAlias.search_key.like(pattern, escape=LIKE_ESCAPE))
        .exists()
    )
    stmt = (
        sa.select(Product)
        .where(Product.active)
        .where(
            sa.or_(
                _normalised(Product.name).like(pattern, escape=LIKE_ESCAPE),
                _normalised(Product.generic_name).like(pattern, escape=LIKE_ESCAPE),
                alias_hit,
            )
        )
    )
    return _paged(stmt, currency, page, per_page)


def get_product_page(slug: str, strength_slug: str | None, low_stock_packs: int) -> ProductPage:
    """The product and the package table of the chosen strength (the first one by default).

    :raise LookupError: no active product has that slug, or it has no such active strength.
    """
    stmt = _with_catalog_tree(sa.select(Product).where(Product.slug == slug, Product.active))
    product = db.session.scalars(stmt).first()
    if product is None:
        raise LookupError(slug)
    strengths = product.active_strengths
    if strength_slug is None:
        strength = strengths[0] if strengths else None
    else:
        strength = next((s for s in strengths if s.slug == strength_slug), None)
        if strength is None:
            raise LookupError(strength_slug)
    rows = package_rows(strength, low_stock_packs) if strength else []
    return ProductPage(product, strength, rows)


def whole_monograph() -> tuple[Any, ...]:
    """Loader options for a monograph page: every part in one query each, however long it is."""
    return (selectinload(Monograph.sections), selectinload(Monograph.uses), selectinload(Monograph.dosing),
            selectinload(Monograph.safety_entries), selectinload(Monograph.faq),
            selectinload(Monograph.products))


def get_monograph(slug: str) -> Monograph:
    """:raise LookupError: no monograph has that slug."""
    stmt = sa.select(Monograph).where(Monograph.slug == slug).options(*whole_monograph())
    monograph = db.session.scalars(stmt).first()
    if monograph is None:
        raise LookupError(slug)
    return monograph


def list_monographs() -> list[Monograph]:
    stmt = sa.select(Monograph).order_by(Monograph.title).options(selectinload(Monograph.products))
    return list(db.session.scalars(stmt))
