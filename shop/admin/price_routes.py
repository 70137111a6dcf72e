"""Admin price editor: package tables with preview, history and scheduled changes, CSV export/import."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from werkzeug.datastructures import MultiDict
from wtforms import DateTimeLocalField, HiddenField, StringField
from wtforms.validators import InputRequired, Length, Optional

from shop import access
from shop.accounts.models import User
from shop.admin import csv_files, prices, prices_csv
from shop.admin.common import Refused, or_404
from shop.catalog.models import Package, Strength
from shop.form_errors import apply_errors
from shop.numbers import IntField, parse_int

bp = Blueprint("admin_prices", __name__, url_prefix="/admin/prices")


class PriceTableForm(FlaskForm):
    """The shared fields; edit_form() adds a price and a version field per package."""

    reason = StringField("Reason for the new prices (optional)", validators=[Length(max=prices.REASON_MAX)],
                         description="Kept in the price history, e.g. “Supplier price rise”.")
    effective_at = DateTimeLocalField(
        "Apply at (UTC, optional)", format="%Y-%m-%dT%H:%M", validators=[Optional()],
        description="Leave empty to apply the prices now; a future date and time schedules them.")


class AddPackageForm(FlaskForm):
    units = StringField("Tablets or capsules in the package")
    price = StringField("Package price")
    reason = StringField("Reason for adding it (optional)", validators=[Length(max=prices.REASON_MAX)])


ADD_PREFIX = "add"  # the add form's fields must not share ids with the price form's


class PackageStateForm(FlaskForm):
    version = IntField(validators=[InputRequired()], minimum=0)  # a version beyond the column: not ours


class ImportForm(FlaskForm):
    file = FileField("Price file (CSV)", validators=[FileRequired("Choose a CSV file.")],
                     description="Columns " + ", ".join(prices_csv.LAYOUT.columns) + ", as in the export. "
                                 "Nothing is applied unless every row is right.")


_BASE64_MAX = (prices_csv.LAYOUT.max_bytes + 3) * 4 // 3  # a file of the largest size, in base64


class ConfirmImportForm(FlaskForm):
    """The checked file again (its bytes in base64), to apply despite the warnings the admin has seen."""

    content = HiddenField(validators=[InputRequired(), Length(max=_BASE64_MAX)])
    filename = HiddenField(validators=[Length(max=100)])
    accept = HiddenField(validators=[InputRequired(), Length(max=64)])


def edit_form(strength: Strength, formdata: MultiDict | None = None) -> PriceTableForm:
    """A price, a version and an original field per package on sale, and per package the browser
    sent (one retired meanwhile still gets its say). The version and the original price are the ones
    the page was read at: only a price typed over its original is saved."""
    posted = formdata or MultiDict()
    fields: dict[str, Any] = {}
    for package in _form_packages(strength, posted):
        label = f"New price for {package.units} {strength.dosage_form}s"
        current = prices.plain_amount(package.price_cents)
        fields[prices.price_field(package.id)] = StringField(label, default=current)
        fields[prices.version_field(package.id)] = HiddenField(default=str(package.version))
        fields[prices.original_field(package.id)] = HiddenField(default=current)
    form_class = type("EditPricesForm", (PriceTableForm,), fields)
    return form_class(formdata=formdata)


def _form_packages(strength: Strength, posted: MultiDict) -> list[Package]:
    return [p for p in strength.packages if p.active or prices.version_field(p.id) in posted]


_me = access.me


def _strength_or_404(strength_id: int) -> Strength:
    return or_404(prices.load_strength(strength_id))


def _render_editor(strength: Strength, form: PriceTableForm, *, add_form: AddPackageForm | None = None,
                   preview: prices.Preview | None = None, changed_meanwhile: frozenset[int] = frozenset(),
                   status: int = 200) -> Any:
    current = prices.preview(strength, {}, current_app.config["LOW_STOCK_PACKS"])
    inputs = [(p, form[prices.price_field(p.id)], form[prices.version_field(p.id)],
               form[prices.original_field(p.id)]) for p in _form_packages(strength, request.form)]
    return render_template(
        "admin/prices/edit.html", strength=strength, product=strength.product, form=form, inputs=inputs,
        current_lines={row.package.id: row.price for row in current.rows},
        add_form=add_form or AddPackageForm(formdata=None, prefix=ADD_PREFIX), table=preview or current,
        previewing=preview is not None,
        history=prices.history(strength.id), scheduled=prices.scheduled(strength.id),
        kind_labels=prices.KIND_LABELS, changed_meanwhile=changed_meanwhile,
    ), status


@bp.get("")
@access.admin
def index() -> str:
    return _render_index(ImportForm(formdata=None))[0]


def _render_index(form: ImportForm, problems: list[prices_csv.RowProblem] | None = None,
                  status: int = 200, check: dict[str, Any] | None = None) -> Any:
    return render_template("admin/prices/index.html", products=prices.overview(), form=form,
                           problems=problems or [], columns=prices_csv.LAYOUT.columns, check=check), status


@bp.route("/strengths/<int:strength_id>", methods=["GET", "POST"])
@access.admin
def edit(strength_id: int) -> Any:
    """The package table of one strength. "preview" (the default button) shows the typed prices as
    customers will see them, without saving; "save" applies or schedules them.

    :raise 404: no such strength.
    """
    strength = _strength_or_404(strength_id)
    if request.method == "GET":
        return _render_editor(strength, edit_form(strength))
    form = edit_form(strength, request.form)
    if not form.validate_on_submit():
        return _render_editor(strength, form, status=422)
    typed = {p.id: form[prices.price_field(p.id)].data for p in _form_packages(strength, request.form)}
    if "save" not in request.form:
        try:
            parsed = prices.parse_prices(strength, typed)
        except Refused as error:
            apply_errors(form, error.errors)
            return _render_editor(strength, form, status=422)
        preview = prices.preview(strength, parsed, current_app.config["LOW_STOCK_PACKS"])
        return _render_editor(strength, form, preview=preview)
    edits = [prices.PriceEdit(package_id, text, _seen_version(form, package_id),
                              _original(form, package_id)) for package_id, text in typed.items()]
    try:
        result = prices.save_prices(strength.id, edits, _me(), reason=form.reason.data or "",
                                    effective_at=form.effective_at.data)
    except prices.PriceConflict as error:
        strength = _strength_or_404(strength_id)  # the state that won, for the admin to review
        _start_from_current(form, strength, {edit.package_id for edit in edits if edit.edited})
        apply_errors(form, error.errors)
        marked = frozenset(e.package_id for e in edits if prices.price_field(e.package_id) in error.errors)
        flash("Nothing was saved: prices changed while you were editing. The fields you left alone now show "
              "the current prices and your typed prices are kept; check the marked fields, then save again.",
              "error")
        return _render_editor(strength, form, changed_meanwhile=marked, status=409)
    except Refused as error:
        apply_errors(form, error.errors)
        return _render_editor(strength, form, status=422)
    _flash_saved(result)
    return redirect(url_for("admin_prices.edit", strength_id=strength.id))


def _seen_version(form: PriceTableForm, package_id: int) -> int:
    version = parse_int(form[prices.version_field(package_id)].data, minimum=0)
    if version is None:
        abort(400)  # not a version the form was given
    return version


def _original(form: PriceTableForm, package_id: int) -> str | None:
    """The price the field started from; None (count it as edited) from a form without one."""
    name = prices.original_field(package_id)
    return form[name].data if name in request.form else None


def _start_from_current(form: PriceTableForm, strength: Strength, edited: set[int]) -> None:
    """After a refusal the form starts again from the prices and versions that won: a field the admin
    left alone shows the current price; an edited one keeps the typed price, to be saved deliberately."""
    for package in strength.packages:
        if prices.version_field(package.id) not in form:
            continue
        current = prices.plain_amount(package.price_cents)
        form[prices.version_field(package.id)].data = str(package.version)
        form[prices.original_field(package.id)].data = current
        if package.id not in edited:
            price_input = form[prices.price_field(package.id)]
            price_input.data, price_input.raw_data = current, [current]


def _flash_saved(result: prices.SaveResult) -> None:
    if not result.changed:
        flash("Nothing to save: the prices are unchanged.", "info")
        return
    noun = "price" if result.changed == 1 else "prices"
    if result.effective_at:
        flash(f"{result.changed} {noun} scheduled for {result.effective_at:%Y-%m-%d %H:%M} UTC.", "success")
    else:
        flash(f"{result.changed} {noun} saved. Customers see the new prices now.", "success")
    for warning in result.warnings:
        flash(f"Please check: {warning}", "info")


@bp.post("/strengths/<int:strength_id>/packages")
@access.admin
def add_package(strength_id: int) -> Any:
    """:raise 404: no such strength."""
    strength = _strength_or_404(strength_id)
    add_form = AddPackageForm(prefix=ADD_PREFIX)
    if add_form.validate_on_submit():
        try:
            package = prices.add_package(strength.id, add_form.units.data, add_form.price.data, _me(),
                                         reason=add_form.reason.data or "")
        except Refused as error:
            apply_errors(add_form, error.errors)
        else:
            flash(f"The {package.units} pack is on sale now.", "success")
            return redirect(url_for("admin_prices.edit", strength_id=strength.id))
    strength = _strength_or_404(strength_id)
    return _render_editor(strength, edit_form(strength), add_form=add_form, status=422)


def _change_state(package_id: int, change: Callable[[int, int, User], Package], done: str) -> Any:
    package = or_404(prices.load_package(package_id))
    form = PackageStateForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        change(package_id, form.version.data, _me())
    except Refused as error:
        for message in error.errors.values():
            flash(message, "error")
    else:
        flash(f"The {package.units} pack {done}.", "success")
    return redirect(url_for("admin_prices.edit", strength_id=package.strength_id))


@bp.post("/packages/<int:package_id>/retire")
@access.admin
def retire_package(package_id: int) -> Any:
    """:raise 404: no such package. :raise 400: no version."""
    return _change_state(package_id, prices.retire_package, "is retired: customers no longer see it")


@bp.post("/packages/<int:package_id>/restore")
@access.admin
def restore_package(package_id: int) -> Any:
    """:raise 404: no such package. :raise 400: no version."""
    return _change_state(package_id, prices.restore_package, "is on sale again")


@bp.post("/changes/<int:change_id>/cancel")
@access.admin
def cancel_change(change_id: int) -> Any:
    """Cancel a scheduled price change. :raise 404: no such change."""
    change = or_404(prices.load_change(change_id))
    strength_id = change.package.strength_id
    try:
        prices.cancel_scheduled(change_id, _me())
    except Refused as error:
        flash(error.errors["change"], "error")
    else:
        flash("The scheduled price change is cancelled.", "success")
    return redirect(url_for("admin_prices.edit", strength_id=strength_id))


@bp.get("/export.csv")
@access.admin
def export_csv() -> Response:
    return csv_files.download(prices_csv.export_csv(), f"prices-{dt.date.today().isoformat()}.csv")


@bp.post("/import")
@access.admin
def import_csv() -> Any:
    """Check a price file and apply it, or, when it gives per-pill warnings, show them with the choice
    to apply it anyway (import_confirm) or to correct the file."""
    form = ImportForm()
    if not form.validate_on_submit():
        return _render_index(form, status=422)
    upload = form.file.data
    data = upload.read(prices_csv.LAYOUT.max_bytes + 1)
    return _import(form, data, (upload.filename or "")[:100], accept=None)


@bp.post("/import/confirm")
@access.admin
def import_confirm() -> Any:
    """Apply a checked file despite its warnings, while they are still the warnings the admin saw."""
    confirm = ConfirmImportForm()
    form = ImportForm(formdata=None)
    data = b""
    if confirm.validate_on_submit():
        with contextlib.suppress(binascii.Error, ValueError):  # not what the check sent: said below
            data = base64.b64decode(confirm.content.data, validate=True)
    if not data:
        form.file.errors = ["The checked file did not come back: import it again."]
        return _render_index(form, status=422)
    return _import(form, data, confirm.filename.data or "", accept=confirm.accept.data)


def _import(form: ImportForm, data: bytes, filename: str, *, accept: str | None) -> Any:
    try:
        report = prices_csv.import_csv(data, _me(), filename=filename, accept=accept)
    except prices_csv.ImportRefused as refused:
        form.file.errors = [*form.file.errors, refused.message]
        return _render_index(form, refused.rows, status=422)
    except prices_csv.ImportNeedsConfirmation as check:
        confirm = ConfirmImportForm(formdata=None, content=base64.b64encode(data).decode(), filename=filename,
                                    accept=check.accept)
        # Confirmed warnings that no longer match: prices changed meanwhile, the admin looks again.
        return _render_index(form, status=409 if accept else 200, check={
            "warnings": check.warnings, "report": check.report, "filename": filename, "form": confirm,
            "changed_meanwhile": accept is not None})
    flash(f"Imported {report.rows} rows: {report.price_changes} price(s) changed, {report.retired} "
          f"package(s) retired, {report.restored} restored, {report.unchanged} row(s) unchanged.", "success")
    if report.unversioned:
        flash(f"{report.unversioned} row(s) had no version from an export: they were applied as they are, "
              "over any change made to those packages meanwhile.", "info")
    for warning in report.warnings:
        flash(f"Applied despite this warning: {warning}", "info")
    return redirect(url_for("admin_prices.index"))
