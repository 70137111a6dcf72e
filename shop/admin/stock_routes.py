"""Admin stock pages: receipts, adjustments, ledger, low stock, expiring lots, CSV."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from shop import access
from shop.admin import csv_files, stock, stock_csv
from shop.admin.common import Refused, or_404
from shop.catalog.models import Product, Strength
from shop.dates import parse_date
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.inventory.models import ADJUSTMENT_REASONS, MOVEMENT_KINDS
from shop.inventory.services import today
from shop.numbers import IntField, parse_id

bp = Blueprint("admin_stock", __name__, url_prefix="/admin/stock")


class ReceiveForm(FlaskForm):
    lot_number = StringField("Lot number", validators=[Length(max=stock.LOT_NUMBER_MAX)],
                             description="As printed on the packs; unique for this strength.")
    expiry_date = DateField("Expiry date", validators=[InputRequired("Enter the expiry date.")])
    units = IntField("Units received", validators=[InputRequired("Enter the number of units received.")],
                     message="Enter the units received as a whole number.",
                     description=f"Tablets or capsules, 1 to {stock.MAX_UNITS:,}.")
    supplier_reference = StringField("Supplier reference (optional)",
                                     validators=[Length(max=stock.SUPPLIER_REFERENCE_MAX)],
                                     description="Delivery note or invoice number.")
    submit = SubmitField("Receive stock")


class AdjustForm(FlaskForm):
    lot_id = SelectField("Lot", coerce=str, validate_choice=False)  # the service checks the lot
    reason_code = SelectField("Reason", choices=[SelectChoice("", "Choose a reason…")] + [
        SelectChoice(code, label) for code, label in ADJUSTMENT_REASONS.items()])
    change = IntField("Change in units", validators=[InputRequired("Enter the change in units.")],
                      message="Enter the change as a whole number, e.g. -12.",
                      description="Positive to add units, negative to remove them, e.g. -12.")
    note = TextAreaField("Note", validators=[Length(max=stock.NOTE_MAX)],
                         description="What happened, for the ledger.")
    submit = SubmitField("Adjust stock")


class ThresholdForm(FlaskForm):
    low_stock_units = IntField(
        "Low-stock threshold (units)", validators=[Optional()], message="Enter a whole number of units.",
        description="Low stock when available units are at or below this. Leave it empty for the shop "
                    "default (a number of the smallest pack).")
    submit = SubmitField("Save threshold")


class ImportForm(FlaskForm):
    file = FileField("Stock CSV file", validators=[FileRequired("Choose a CSV file.")],
                     description=f"UTF-8 CSV, up to {csv_files.size_text(stock_csv.LAYOUT.max_bytes)}.")
    submit = SubmitField("Check and import")


_me = access.me


def _strength_or_404(strength_id: int) -> Strength:
    return or_404(stock.get_strength(strength_id))


def _lot_choices(detail: stock.StrengthDetail) -> list[SelectChoice]:
    def label(row: stock.LotStock) -> str:
        lot, state = row.lot, ", expired" if row.expired else ""
        return f"{lot.lot_number} (expires {lot.expiry_date}, {lot.units_remaining:,} units{state})"

    choices = [SelectChoice(str(row.lot.id), label(row)) for row in detail.lots]
    return [SelectChoice("", "Choose a lot…"), *choices]


def _render_strength(strength: Strength, status: int = 200, *, receive_form: ReceiveForm | None = None,
                     adjust_form: AdjustForm | None = None,
                     threshold_form: ThresholdForm | None = None) -> Any:
    detail = stock.strength_detail(strength)
    adjust_form = adjust_form or AdjustForm(formdata=None)
    adjust_form.lot_id.choices = _lot_choices(detail)
    threshold_form = threshold_form or ThresholdForm(formdata=None, low_stock_units=strength.low_stock_units)
    return render_template(
        "admin/stock/strength.html", strength=strength, detail=detail,
        receive_form=receive_form or ReceiveForm(formdata=None), adjust_form=adjust_form,
        threshold_form=threshold_form, reasons=ADJUSTMENT_REASONS,
        low_stock_packs=current_app.config["LOW_STOCK_PACKS"],
    ), status


@bp.get("")
@access.admin
def index() -> str:
    return render_template("admin/stock/index.html", rows=stock.overview(), today=today())


@bp.get("/strengths/<int:strength_id>")
@access.admin
def strength(strength_id: int) -> Any:
    """One strength: its lots, the receive, adjust and threshold forms, recent movements.

    :raise 404: no such strength.
    """
    return _render_strength(_strength_or_404(strength_id))


@bp.post("/strengths/<int:strength_id>/receive")
@access.admin
def receive(strength_id: int) -> Any:
    """:raise 404: no such strength."""
    item = _strength_or_404(strength_id)
    form = ReceiveForm()
    if form.validate_on_submit():
        try:
            lot = stock.receive(item, lot_number=form.lot_number.data or "",
                                expiry_date=form.expiry_date.data, units=form.units.data,
                                supplier_reference=form.supplier_reference.data or "", actor=_me())
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"Received {lot.units_received:,} units as lot {lot.lot_number}.", "success")
            return redirect(url_for("admin_stock.strength", strength_id=item.id))
    return _render_strength(item, 422, receive_form=form)


@bp.post("/strengths/<int:strength_id>/adjust")
@access.admin
def adjust(strength_id: int) -> Any:
    """:raise 404: no such strength."""
    item = _strength_or_404(strength_id)
    form = AdjustForm()
    if form.validate_on_submit():
        try:
            # Anything but an id is no lot: the service then says "choose a lot".
            movement = stock.adjust(item, lot_id=parse_id(form.lot_id.data),
                                    units=form.change.data, reason_code=form.reason_code.data or "",
                                    note=form.note.data or "", actor=_me())
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            reason = ADJUSTMENT_REASONS[movement.reason_code or ""]
            flash(f"Adjusted lot by {movement.units:+,} units ({reason}).", "success")
            return redirect(url_for("admin_stock.strength", strength_id=item.id))
    return _render_strength(item, 422, adjust_form=form)


@bp.post("/strengths/<int:strength_id>/threshold")
@access.admin
def threshold(strength_id: int) -> Any:
    """:raise 404: no such strength."""
    item = _strength_or_404(strength_id)
    form = ThresholdForm()
    if form.validate_on_submit():
        try:
            stock.set_threshold(item, form.low_stock_units.data, _me())
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash("Low-stock threshold saved.", "success")
            return redirect(url_for("admin_stock.strength", strength_id=item.id))
    return _render_strength(item, 422, threshold_form=form)


def _int_arg(name: str) -> int | None:
    """An id in the query string; anything else is no filter (or, for `before`, the first page)."""
    return parse_id(request.args.get(name))


@bp.get("/ledger")
@access.admin
def ledger() -> str:
    """Every stock movement, newest first; filters: strength, lot, kind, dates."""
    kind = request.args.get("kind", "")
    filters = stock.LedgerFilter(strength_id=_int_arg("strength"), lot_id=_int_arg("lot"),
                                 kind=kind if kind in MOVEMENT_KINDS else None,
                                 date_from=parse_date(request.args.get("from")),
                                 date_to=parse_date(request.args.get("to")))
    page = stock.ledger(filters, before=_int_arg("before"))
    strengths = db.session.execute(
        sa.select(Strength.id, Product.name, Strength.label).join(Product, Product.id == Strength.product_id)
        .order_by(Product.name, Strength.position, Strength.id)).all()
    args = {"strength": filters.strength_id or "", "lot": filters.lot_id or "", "kind": filters.kind or "",
            "from": filters.date_from.isoformat() if filters.date_from else "",
            "to": filters.date_to.isoformat() if filters.date_to else ""}
    return render_template("admin/stock/ledger.html", page=page, filters=filters, args=args,
                           strengths=strengths, kinds=MOVEMENT_KINDS, reasons=ADJUSTMENT_REASONS)


@bp.get("/low")
@access.admin
def low_stock() -> str:
    return render_template("admin/stock/low_stock.html", rows=stock.low_stock())


@bp.get("/expiring")
@access.admin
def expiring() -> str:
    return render_template("admin/stock/expiring.html", rows=stock.expiring(), days=stock.EXPIRING_DAYS)


@bp.get("/export.csv")
@access.admin
def export() -> Response:
    return csv_files.download(stock_csv.export_csv(), f"stock-{today().isoformat()}.csv")


@bp.route("/import", methods=["GET", "POST"])
@access.admin
def import_stock() -> Any:
    """Upload a stock CSV: every row is checked, then all are applied, or none."""
    form = ImportForm()
    result = None
    if form.validate_on_submit():
        result = stock_csv.import_csv(form.file.data.read(stock_csv.LAYOUT.max_bytes + 1), _me())
        if result.ok:
            flash(f"Imported {result.rows:,} lot(s): {result.received:,} received, {result.adjusted:,} "
                  f"count(s) corrected, {result.unchanged:,} unchanged.", "success")
            return redirect(url_for("admin_stock.index"))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/stock/import.html", form=form, result=result,
                           columns=stock_csv.LAYOUT.columns), status
