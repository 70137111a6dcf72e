"""Catalog pages: the product list and search, product pages and monographs."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from shop.access import public
from shop.catalog import services
from shop.numbers import parse_int

bp = Blueprint("catalog", __name__)


@bp.get("/")
@public
def home() -> str:
    listing = services.list_products(current_app.config["CURRENCY"])
    return render_template("catalog/home.html", listing=listing, products=listing.items)


@bp.get("/products")
@public
def product_list() -> str:
    """:raise 404: a page number past the last page."""
    query = request.args.get("q", "").strip()
    currency = current_app.config["CURRENCY"]
    page = parse_int(request.args.get("page", "1"))
    if page is None:
        abort(404)  # not a page number: no such page, as for one past the last
    try:
        listing = (services.search_products(query, currency, page) if query
                   else services.list_products(currency, page))
    except services.NoSuchPage:
        abort(404)
    return render_template("catalog/product_list.html", listing=listing, products=listing.items, query=query)


@bp.get("/products/<slug>")
@public
def product_detail(slug: str) -> str:
    """:raise 404: unknown or inactive product, or unknown strength."""
    try:
        page = services.get_product_page(
            slug, request.args.get("strength"), current_app.config["LOW_STOCK_PACKS"]
        )
    except LookupError:
        abort(404)
    return render_template("catalog/product_detail.html", page=page, product=page.product)


@bp.get("/monographs")
@public
def monograph_list() -> str:
    return render_template("catalog/monograph_list.html", monographs=services.list_monographs())


@bp.get("/monographs/<slug>")
@public
def monograph_detail(slug: str) -> str:
    """:raise 404: unknown monograph."""
    try:
        monograph = services.get_monograph(slug)
    except LookupError:
        abort(404)
    return render_template("catalog/monograph_detail.html", monograph=monograph)
