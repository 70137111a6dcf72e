"""Cart pages. Only a package id and a count come from the form; prices come from the database."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.cart import services
from shop.numbers import parse_id, parse_int

bp = Blueprint("cart", __name__, url_prefix="/cart")


def _shopper() -> Any:
    return current_user._get_current_object() if current_user.is_authenticated else None  # type: ignore[attr-defined]


def _package_id() -> int:
    package_id = parse_id(request.form.get("package_id"))
    if package_id is None:
        abort(400)  # the page's own forms always send a real one
    return package_id


def _quantity(default: int | None = None) -> int:
    """The packs typed. Not a whole number (or beyond any column) reads as -1, outside every range,
    so the cart's own message says which counts it takes and nothing changes."""
    value = request.form.get("quantity", "")
    if default is not None and value == "":
        return default
    quantity = parse_int(value)
    return -1 if quantity is None else quantity


@bp.get("")
@access.shopper
def show() -> str:
    return render_template("cart/cart.html", cart=services.view(_shopper()), confirm=ConfirmForm())


@bp.post("/add")
@access.shopper
def add() -> Any:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        added = services.add(_shopper(), _package_id(), _quantity(1))
    except services.CartError as error:
        flash(str(error), "error")
        return redirect(request.referrer if request.referrer and request.referrer.startswith(
            request.host_url) else url_for("cart.show"))
    flash(added, "success")
    return redirect(url_for("cart.show"))


@bp.post("/update")
@access.shopper
def update() -> Any:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        services.set_quantity(_shopper(), _package_id(), _quantity())
    except services.CartError as error:
        flash(str(error), "error")
    return redirect(url_for("cart.show"))
