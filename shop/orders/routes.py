"""Checkout and the customer's orders."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.cart import services as cart
from shop.orders import services

checkout_bp = Blueprint("checkout", __name__, url_prefix="/checkout")
bp = Blueprint("orders", __name__, url_prefix="/orders")

TOKEN_KEY = "checkout_token"  # noqa: S105 - a session key name


def _me() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


@checkout_bp.get("")
@access.customer
def start() -> Any:
    view = cart.view(_me())
    if not view.can_checkout:
        flash("Checkout is not open yet: the cart says what each item still needs.", "error")
        return redirect(url_for("cart.show"))
    # One token per checkout page: placing the order twice with it finds the same order.
    token = session.get(TOKEN_KEY) or services.new_checkout_token()
    session[TOKEN_KEY] = token
    return render_template("orders/checkout.html", cart=view, token=token, confirm=ConfirmForm())


@checkout_bp.post("")
@access.customer
def place() -> Any:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    token = request.form.get("checkout_token", "")
    if not token or len(token) > 64:
        abort(400)
    address_id = request.form.get("address_id", "")
    try:
        order = services.place_order(_me(), int(address_id) if address_id.isdigit() else None, token)
    except services.CheckoutError as error:
        flash(str(error), "error")
        return redirect(url_for("checkout.start") if cart.view(_me()).can_checkout else url_for("cart.show"))
    session.pop(TOKEN_KEY, None)
    return redirect(url_for("orders.pay", number=order.number))


@bp.get("")
@access.customer
def index() -> str:
    return render_template("orders/index.html", orders=services.customer_orders(_me()))


@bp.get("/<number>")
@access.customer
def detail(number: str) -> str:
    """:raise 404: not one of this customer's orders."""
    order = services.owned_order(_me(), number)
    if order is None:
        abort(404)
    return render_template("orders/detail.html", order=order)


@bp.get("/<number>/pay")
@access.customer
def pay(number: str) -> Any:
    """:raise 404: not one of this customer's orders."""
    order = services.owned_order(_me(), number)
    if order is None:
        abort(404)
    return redirect(url_for("orders.detail", number=order.number))
