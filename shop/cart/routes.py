"""Cart pages. Only a package id and a count come from the form; prices come from the database."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.cart import services

bp = Blueprint("cart", __name__, url_prefix="/cart")


def _shopper() -> Any:
    return current_user._get_current_object() if current_user.is_authenticated else None  # type: ignore[attr-defined]


def _int_field(name: str, default: int | None = None) -> int:
    value = request.form.get(name, "")
    if value.strip().isdigit():
        return int(value)
    if default is not None and value == "":
        return default
    abort(400)


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
        added = services.add(_shopper(), _int_field("package_id"), _int_field("quantity", 1))
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
        services.set_quantity(_shopper(), _int_field("package_id"), _int_field("quantity"))
    except services.CartError as error:
        flash(str(error), "error")
    return redirect(url_for("cart.show"))
