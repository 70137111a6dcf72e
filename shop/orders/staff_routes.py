"""Staff order pages: pharmacist release, shipping, delivery, cancelling, refunds.

Each action checks first that the order's status allows it (if not: a flashed message and back to
the order, nothing changed), then its form (422 with the errors beside the fields), then calls one
operation and redirects (POST-redirect-GET).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.form_errors import apply_errors
from shop.money import InvalidPrice, format_cents, parse_price
from shop.orders import services, staff
from shop.orders.models import (
    CANCELLED,
    DELIVERED,
    REFUNDED,
    RELEASED,
    SHIPPED,
    STATUS_LABELS,
    Order,
)
from shop.payments.gateway import gateway_for_app

bp = Blueprint("staff_orders", __name__, url_prefix="/staff/orders")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class ShipForm(FlaskForm):
    carrier = StringField("Carrier", filters=[_strip],
                          validators=[DataRequired("Enter the carrier."), Length(max=60)])
    tracking_number = StringField("Tracking number", filters=[_strip],
                                  validators=[DataRequired("Enter the tracking number."), Length(max=80)])
    submit = SubmitField("Mark shipped")


class CancelForm(FlaskForm):
    reason = TextAreaField("Reason for cancelling", filters=[_strip],
                           validators=[DataRequired("Give a reason for cancelling."), Length(max=500)],
                           description="The customer is told this reason.")
    submit = SubmitField("Cancel order")


class RefundForm(FlaskForm):
    amount = StringField("Amount to refund", filters=[_strip], validators=[Length(max=20)])
    reason = TextAreaField("Reason for the refund", filters=[_strip],
                           validators=[DataRequired("Give a reason for the refund."), Length(max=500)],
                           description="The customer is told this reason.")
    submit = SubmitField("Refund")


_me = access.me


def _view(number: str) -> services.StaffOrderView:
    view = services.staff_order(number)
    if view is None:
        abort(404)
    return view


def _render(view: services.StaffOrderView, status: int = 200, **forms: FlaskForm) -> tuple[str, int]:
    order = view.order
    refund_form = forms.get("refund") or RefundForm(formdata=None)
    refund_form.amount.description = (f"For example 12.50. Leave it empty to refund everything still "
                                      f"refundable: {format_cents(view.payment.refundable, order.currency)}.")
    return render_template(
        "staff_orders/detail.html", view=view, order=order, payment=view.payment,
        actions=services.staff_actions(order, view.payment, current_user.role),
        status_labels=STATUS_LABELS, review_links=current_user.role == "pharmacist",
        ship_form=forms.get("ship") or ShipForm(formdata=None),
        cancel_form=forms.get("cancel") or CancelForm(formdata=None), refund_form=refund_form,
    ), status


def _back(order: Order) -> Any:
    return redirect(url_for("staff_orders.detail", number=order.number))


def _not_now(view: services.StaffOrderView, action: str, to_status: str) -> Any | None:
    """The redirect back, with the reason, when the order's status does not allow `action` now."""
    if action in services.staff_actions(view.order, view.payment, current_user.role):
        return None
    if action == "refund" and (view.order.status, to_status) in services.TRANSITIONS:
        flash(f"Nothing is left to refund on order {view.order.number}.", "error")
    else:
        flash(services.refusal(view.order, to_status), "error")
    return _back(view.order)


@bp.get("")
@access.staff
def index() -> str:
    return render_template("staff_orders/index.html", board=services.staff_board(),
                           status_labels=STATUS_LABELS)


@bp.get("/<number>")
@access.staff
def detail(number: str) -> tuple[str, int]:
    """:raise 404: no such order."""
    return _render(_view(number))


@bp.post("/<number>/release")
@access.pharmacist
def release(number: str) -> Any:
    """Capture the payment and dispense. :raise 404: no such order. :raise 400: bad CSRF token."""
    view = _view(number)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if (refused := _not_now(view, "release", RELEASED)) is not None:
        return refused
    try:
        staff.release(view.order, _me(), gateway_for_app(current_app))
    except staff.ActionRefused as error:
        flash(error.message, "error")
    else:
        flash(f"Order {number} is released: the payment is captured and the stock dispensed.", "success")
    return _back(view.order)


@bp.post("/<number>/ship")
@access.staff
def ship(number: str) -> Any:
    """:raise 404: no such order."""
    view = _view(number)
    if (refused := _not_now(view, "ship", SHIPPED)) is not None:
        return refused
    form = ShipForm()
    if not form.validate_on_submit():
        return _render(view, 422, ship=form)
    try:
        services.ship(view.order, _me(), form.carrier.data, form.tracking_number.data)
    except services.InvalidInput as error:
        apply_errors(form, error.errors)
        return _render(view, 422, ship=form)
    except services.IllegalTransition as error:
        flash(str(error), "error")
    else:
        flash(f"Order {number} is shipped; the customer is told the tracking number.", "success")
    return _back(view.order)


@bp.post("/<number>/delivered")
@access.staff
def deliver(number: str) -> Any:
    """:raise 404: no such order. :raise 400: bad CSRF token."""
    view = _view(number)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if (refused := _not_now(view, "deliver", DELIVERED)) is not None:
        return refused
    try:
        services.mark_delivered(view.order, _me())
    except services.IllegalTransition as error:
        flash(str(error), "error")
    else:
        flash(f"Order {number} is marked delivered.", "success")
    return _back(view.order)


@bp.post("/<number>/cancel")
@access.staff
def cancel(number: str) -> Any:
    """Cancel the card authorisation and the order. :raise 404: no such order."""
    view = _view(number)
    if (refused := _not_now(view, "cancel", CANCELLED)) is not None:
        return refused
    form = CancelForm()
    if not form.validate_on_submit():
        return _render(view, 422, cancel=form)
    try:
        staff.cancel(view.order, _me(), form.reason.data, gateway_for_app(current_app))
    except staff.ActionRefused as error:
        if error.errors:
            apply_errors(form, error.errors)
            return _render(view, 422, cancel=form)
        flash(error.message, "error")
    else:
        flash(f"Order {number} is cancelled; stock and prescription quantity are back.", "success")
    return _back(view.order)


@bp.post("/<number>/refund")
@access.admin
def refund(number: str) -> Any:
    """Refund part or all of a captured payment. :raise 404: no such order."""
    view = _view(number)
    if (refused := _not_now(view, "refund", REFUNDED)) is not None:
        return refused
    form = RefundForm()
    if not form.validate_on_submit():
        return _render(view, 422, refund=form)
    amount = None
    if form.amount.data:
        try:
            amount = parse_price(form.amount.data)
        except InvalidPrice:
            apply_errors(form, {"amount": "Enter an amount such as 12.50: more than zero, at most two "
                                          "decimals."})
            return _render(view, 422, refund=form)
    try:
        refunded = staff.refund(view.order, _me(), amount, gateway_for_app(current_app), form.reason.data)
    except staff.ActionRefused as error:
        if error.errors:
            apply_errors(form, error.errors)
            return _render(view, 422, refund=form)
        flash(error.message, "error")
    else:
        flash(f"Refunded {format_cents(refunded, view.order.currency)} on order {number}; "
              "the customer is told.", "success")
    return _back(view.order)
