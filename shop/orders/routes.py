"""Checkout and the customer's orders."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.cart import services as cart
from shop.numbers import parse_id
from shop.orders import services, staff
from shop.orders.models import AWAITING_PAYMENT, PAID, Order
from shop.payments import checkout
from shop.payments.gateway import gateway_for_app
from shop.security import content_security_policy

checkout_bp = Blueprint("checkout", __name__, url_prefix="/checkout")
bp = Blueprint("orders", __name__, url_prefix="/orders")

# Until our pharmacist releases it, a customer may cancel their order.
CUSTOMER_CANCELLABLE = (AWAITING_PAYMENT, PAID)
TOKEN_KEY = "checkout_token"  # noqa: S105 - a session key name


_me = access.me


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
    # "Add an address" on this page comes back with ?address=<the new one>: that one is chosen.
    user = _me()
    requested = parse_id(request.args.get("address"))
    chosen = next((a for a in user.addresses if a.id == requested), None) or user.default_address
    return render_template("orders/checkout.html", cart=view, token=token, confirm=ConfirmForm(),
                           chosen_address_id=chosen.id if chosen else None)


@checkout_bp.post("")
@access.customer
def place() -> Any:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    token = request.form.get("checkout_token", "")
    if not token or len(token) > 64:
        abort(400)
    try:  # an address id that is none of the customer's is refused by place_order, with its message
        order = services.place_order(_me(), parse_id(request.form.get("address_id")), token)
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
    return render_template("orders/detail.html", order=order, payment=services.payment_summary(order),
                           can_cancel=order.status in CUSTOMER_CANCELLABLE, form=ConfirmForm())


def _payable(number: str) -> Order:
    """:raise 404: not one of this customer's orders."""
    order = services.owned_order(_me(), number)
    if order is None:
        abort(404)
    return order


def _payment_page(order: Order, *, error: str = "", action_secret: str | None = None,
                  status: int = 200) -> Any:
    gateway = gateway_for_app(current_app)
    html = render_template("orders/pay.html", order=order, error=error, action_secret=action_secret,
                           stripe_js_url=gateway.stripe_js_url, publishable_key=gateway.publishable_key,
                           tokenise_with_card=bool(gateway.api_base), form=ConfirmForm())
    response = make_response(html, status)
    # Stripe's script (or localstripe's stand-in) is allowed on this page only.
    response.headers["Content-Security-Policy"] = content_security_policy(gateway.content_security_policy())
    return response


def _after_payment(order: Order, outcome: checkout.Outcome) -> Any:
    if outcome.action_client_secret:
        return _payment_page(order, action_secret=outcome.action_client_secret)
    if outcome.paid:
        flash("Thank you: your card is authorised. It is charged only when our pharmacist releases the "
              "order.", "success")
    return redirect(url_for("orders.detail", number=order.number))


@bp.get("/<number>/pay")
@access.customer
def pay(number: str) -> Any:
    """The payment step: the order and the card form. It only reads: the PaymentIntent is made (or
    resumed, or retired) when the card is submitted, by the POST below. :raise 404: not one of this
    customer's orders."""
    order = _payable(number)
    if order.status != AWAITING_PAYMENT:
        return redirect(url_for("orders.detail", number=order.number))
    return _payment_page(order)


@bp.post("/<number>/pay")
@access.customer
def pay_submit(number: str) -> Any:
    """The card the browser tokenised. :raise 404: not one of this customer's orders."""
    order = _payable(number)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        outcome = checkout.pay(order, gateway_for_app(current_app), request.form.get("payment_method", ""))
    except checkout.PaymentProblem as problem:
        return _payment_page(order, error=str(problem), status=422)
    return _after_payment(order, outcome)


@bp.post("/<number>/pay/check")
@access.customer
def pay_check(number: str) -> Any:
    """Back from the bank's check in the browser. :raise 404: not one of this customer's orders."""
    order = _payable(number)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        outcome = checkout.check(order, gateway_for_app(current_app))
    except checkout.PaymentProblem as problem:
        return _payment_page(order, error=str(problem), status=422)
    return _after_payment(order, outcome)


@bp.post("/<number>/cancel")
@access.customer
def cancel(number: str) -> Any:
    """The customer cancels an order not yet released by our pharmacist: any card authorisation is
    released, stock and prescription units come back. :raise 404: not one of this customer's orders."""
    order = _payable(number)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if order.status not in CUSTOMER_CANCELLABLE:
        flash("This order is already with our pharmacist and can no longer be cancelled here. Please "
              "contact us.", "error")
        return redirect(url_for("orders.detail", number=order.number))
    try:
        staff.cancel(order, _me(), "cancelled by the customer", gateway_for_app(current_app))
    except staff.ActionRefused:
        # Staff wording is not for customers: released meanwhile, or Stripe could not be reached.
        flash("We could not cancel this order just now: it may have been released by our pharmacist "
              "meanwhile. Please reload the page or contact us.", "error")
    else:
        flash(f"Order {order.number} is cancelled. Nothing has been charged.", "success")
    return redirect(url_for("orders.detail", number=order.number))
