"""Admin catalog and monograph editing: products, brand names and synonyms, strengths; new monographs,
their details, review, sections (with a preview), uses, dosing rows, questions and safety entries.
The rules live in catalog_edit and monograph_edit; the forms in catalog_forms.

A save of a product, a monograph or a section that someone else saved since the form was read is
refused with 409: the form comes back with the admin's typed text, the other change beside it and
the version now, so saving again replaces the other change deliberately.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms import Field
from wtforms.fields.choices import SelectChoice

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.admin import catalog_edit as edit
from shop.admin import monograph_edit as monographs
from shop.admin.catalog_forms import (
    ROW_FORMS,
    AliasForm,
    DetailsForm,
    NewMonographForm,
    NewStrengthForm,
    ProductEditForm,
    ProductForm,
    ReviewForm,
    SafetyForm,
    SectionForm,
    StrengthForm,
    plain_decimal,
    row_fields,
    row_form_data,
)
from shop.catalog.models import Monograph, Product, SafetyEntry, Strength
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.markdown import render_markdown

bp = Blueprint("admin_catalog", __name__, url_prefix="/admin/catalog")

_me = access.me


def _confirmed() -> None:
    """A button-only POST: :raise 400: without a valid CSRF token."""
    if not ConfirmForm().validate_on_submit():
        abort(400)


def _status() -> int:
    return 422 if request.method == "POST" else 200


def _seen_version(field: Field) -> int:
    """The version the form was read at. :raise 400: none, or not a number (not our form)."""
    try:
        return int(field.data)
    except (TypeError, ValueError):
        abort(400)


def _show_conflict(form: FlaskForm, conflict: edit.EditConflict) -> None:
    """Keep the typed text, mark what the other save changed, and carry the version now: saving
    again from this form replaces the other change on purpose."""
    form["version"].data = str(conflict.version)
    apply_errors(form, conflict.errors)


# Products ------------------------------------------------------------------------------------------


def _monograph_choices(form: ProductForm) -> None:
    form.monograph_id.choices = [SelectChoice("", "No monograph")] + [
        SelectChoice(str(m.id), m.title) for m in monographs.all_monographs()]


def _product_fields(form: ProductForm) -> edit.ProductFields:
    monograph = form.monograph_id.data or ""
    return edit.ProductFields(
        name=form.name.data or "", slug=form.slug.data or "", generic_name=form.generic_name.data or "",
        short_description=form.short_description.data or "",
        prescription_only=bool(form.prescription_only.data),
        controlled_substance=bool(form.controlled_substance.data),
        monograph_id=int(monograph) if monograph.isdigit() else None,
    )


def _product_or_404(product_id: int) -> Product:
    product = edit.product_for_edit(product_id)
    if product is None:
        abort(404)
    return product


def _render_product(product: Product, form: ProductEditForm | None = None,
                    alias_form: AliasForm | None = None, status: int = 200) -> tuple[str, int]:
    if form is None:
        form = ProductEditForm(formdata=None, name=product.name, slug=product.slug,
                               generic_name=product.generic_name, short_description=product.short_description,
                               monograph_id=str(product.monograph_id or ""),
                               prescription_only=product.prescription_only,
                               controlled_substance=product.controlled_substance,
                               version=str(product.version))
    _monograph_choices(form)
    return render_template("admin/catalog/product_edit.html", product=product, form=form,
                           alias_form=alias_form or AliasForm(formdata=None, prefix="alias"),
                           confirm=ConfirmForm()), status


@bp.get("")
@access.admin
def index() -> str:
    search = request.args.get("q", "").strip()[:100]
    return render_template("admin/catalog/index.html", products=edit.admin_products(search), search=search)


@bp.route("/products/new", methods=["GET", "POST"])
@access.admin
def product_new() -> Any:
    form = ProductForm(prescription_only=True) if request.method == "GET" else ProductForm()
    _monograph_choices(form)
    if form.validate_on_submit():
        try:
            product = edit.create_product(_me(), _product_fields(form))
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{product.name} is created. It stays hidden from the shop until you add a strength "
                  "and activate it.", "success")
            return redirect(url_for(".product_edit", product_id=product.id))
    return render_template("admin/catalog/product_new.html", form=form), _status()


@bp.route("/products/<int:product_id>", methods=["GET", "POST"])
@access.admin
def product_edit(product_id: int) -> Any:
    """:raise 404: no such product."""
    product = _product_or_404(product_id)
    if request.method == "GET":
        return _render_product(product)
    form = ProductEditForm()
    _monograph_choices(form)
    if form.validate_on_submit():
        try:
            edit.update_product(_me(), product_id, _product_fields(form), _seen_version(form.version))
        except LookupError:
            abort(404)
        except edit.EditConflict as conflict:
            _show_conflict(form, conflict)
            return _render_product(_product_or_404(product_id), form, status=409)
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash("Product saved.", "success")
            return redirect(url_for(".product_edit", product_id=product_id))
    return _render_product(_product_or_404(product_id), form, status=422)


def _product_action(product_id: int, action: Callable[[], object], done: str) -> Response:
    _confirmed()
    try:
        action()
    except LookupError:
        abort(404)
    except edit.EditRefused as error:
        flash(str(error), "error")
    else:
        flash(done, "success")
    return redirect(url_for(".product_edit", product_id=product_id))


@bp.post("/products/<int:product_id>/activate")
@access.admin
def product_activate(product_id: int) -> Response:
    """:raise 404: no such product."""
    return _product_action(product_id, lambda: edit.set_product_active(_me(), product_id, True),
                           "The product is active: customers can see and buy it.")


@bp.post("/products/<int:product_id>/deactivate")
@access.admin
def product_deactivate(product_id: int) -> Response:
    """:raise 404: no such product."""
    return _product_action(product_id, lambda: edit.set_product_active(_me(), product_id, False),
                           "The product is inactive: it is hidden from the shop and carts cannot check it "
                           "out.")


@bp.post("/products/<int:product_id>/delete")
@access.admin
def product_delete(product_id: int) -> Response:
    """:raise 404: no such product."""
    _confirmed()
    try:
        name = edit.delete_product(_me(), product_id)
    except LookupError:
        abort(404)
    except edit.EditRefused as error:
        flash(str(error), "error")
        return redirect(url_for(".product_edit", product_id=product_id))
    flash(f"{name} is deleted.", "success")
    return redirect(url_for(".index"))


@bp.post("/products/<int:product_id>/aliases")
@access.admin
def alias_add(product_id: int) -> Any:
    """:raise 404: no such product."""
    product = _product_or_404(product_id)
    form = AliasForm(prefix="alias")
    if form.validate_on_submit():
        try:
            alias = edit.add_alias(_me(), product_id, form.kind.data or "", form.name.data or "")
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{edit.ALIAS_KINDS[alias.kind]} {alias.name!r} added.", "success")
            return redirect(url_for(".product_edit", product_id=product_id, _anchor="aliases"))
    return _render_product(product, alias_form=form, status=422)


@bp.post("/products/<int:product_id>/aliases/<int:alias_id>/remove")
@access.admin
def alias_remove(product_id: int, alias_id: int) -> Response:
    """:raise 404: no such brand name or synonym of this product."""
    _confirmed()
    try:
        name = edit.remove_alias(_me(), product_id, alias_id)
    except LookupError:
        abort(404)
    flash(f"{name!r} removed.", "success")
    return redirect(url_for(".product_edit", product_id=product_id, _anchor="aliases"))


# Strengths -----------------------------------------------------------------------------------------


def _strength_fields(form: StrengthForm) -> edit.StrengthFields:
    return edit.StrengthFields(label=form.label.data or "", slug=form.slug.data or "",
                               amount=form.amount.data, unit=form.unit.data or "",
                               dosage_form=form.dosage_form.data or "", position=form.position.data)


@bp.route("/products/<int:product_id>/strengths/new", methods=["GET", "POST"])
@access.admin
def strength_new(product_id: int) -> Any:
    """:raise 404: no such product."""
    product = _product_or_404(product_id)
    form = NewStrengthForm()
    if form.validate_on_submit():
        try:
            strength = edit.create_strength(_me(), product_id, _strength_fields(form), form.units.data,
                                            form.price.data or "")
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{strength.label} is added with its first package.", "success")
            return redirect(url_for(".product_edit", product_id=product_id, _anchor="strengths"))
    return render_template("admin/catalog/strength_form.html", product=product, strength=None,
                           form=form), _status()


def _strength_or_404(strength_id: int) -> Strength:
    strength = db.session.get(Strength, strength_id)
    if strength is None:
        abort(404)
    return strength


@bp.route("/strengths/<int:strength_id>", methods=["GET", "POST"])
@access.admin
def strength_edit(strength_id: int) -> Any:
    """:raise 404: no such strength."""
    strength = _strength_or_404(strength_id)
    if request.method == "GET":
        form = StrengthForm(label=strength.label, slug=strength.slug, amount=plain_decimal(strength.amount),
                            unit=strength.unit, dosage_form=strength.dosage_form, position=strength.position)
    else:
        form = StrengthForm()
    if form.validate_on_submit():
        try:
            edit.update_strength(_me(), strength_id, _strength_fields(form))
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash("Strength saved.", "success")
            return redirect(url_for(".product_edit", product_id=strength.product_id, _anchor="strengths"))
    strength = _strength_or_404(strength_id)
    return render_template("admin/catalog/strength_form.html", product=strength.product, strength=strength,
                           form=form), _status()


def _warn_if_nothing_left(product: Product) -> None:
    if product.active and not product.active_strengths:
        flash(f"{product.name} has no active strength left, so the shop shows it without prices: "
              "deactivate the product too, or add a strength.", "error")


def _strength_action(strength_id: int, active: bool) -> Response:
    _confirmed()
    try:
        strength = edit.set_strength_active(_me(), strength_id, active)
    except LookupError:
        abort(404)
    except edit.EditRefused as error:
        flash(str(error), "error")
        strength = _strength_or_404(strength_id)
    else:
        flash(f"{strength.label} is {'active' if active else 'inactive'}.", "success")
        _warn_if_nothing_left(strength.product)
    return redirect(url_for(".product_edit", product_id=strength.product_id, _anchor="strengths"))


@bp.post("/strengths/<int:strength_id>/activate")
@access.admin
def strength_activate(strength_id: int) -> Response:
    """:raise 404: no such strength."""
    return _strength_action(strength_id, True)


@bp.post("/strengths/<int:strength_id>/deactivate")
@access.admin
def strength_deactivate(strength_id: int) -> Response:
    """:raise 404: no such strength."""
    return _strength_action(strength_id, False)


@bp.post("/strengths/<int:strength_id>/delete")
@access.admin
def strength_delete(strength_id: int) -> Response:
    """:raise 404: no such strength."""
    _confirmed()
    product_id = _strength_or_404(strength_id).product_id
    try:
        label = edit.delete_strength(_me(), strength_id)
    except LookupError:
        abort(404)
    except edit.EditRefused as error:
        flash(str(error), "error")
    else:
        flash(f"{label} is deleted.", "success")
        _warn_if_nothing_left(_product_or_404(product_id))
    return redirect(url_for(".product_edit", product_id=product_id, _anchor="strengths"))


# Monographs ----------------------------------------------------------------------------------------


@bp.get("/monographs")
@access.admin
def monograph_list() -> str:
    return render_template("admin/catalog/monograph_list.html", monographs=monographs.all_monographs())


@bp.route("/monographs/new", methods=["GET", "POST"])
@access.admin
def monograph_new() -> Any:
    form = NewMonographForm()
    if form.validate_on_submit():
        fields = monographs.NewMonographFields(
            slug=form.slug.data or "", title=form.title.data or "", drug_name=form.drug_name.data or "",
            drug_class=form.drug_class.data or "", summary=form.summary.data or "",
            last_reviewed=form.last_reviewed.data, reviewed_by=form.reviewed_by.data or "")
        try:
            monograph = monographs.create_monograph(_me(), fields)
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"The {monograph.title} monograph is created with its {len(monograph.sections)} sections "
                  "still empty: write them one by one below, then add its uses, doses and safety entries.",
                  "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph.id))
    return render_template("admin/catalog/monograph_new.html", form=form), _status()


def _monograph_or_404(monograph_id: int) -> Monograph:
    monograph = monographs.monograph_for_edit(monograph_id)
    if monograph is None:
        abort(404)
    return monograph


def _render_monograph(monograph: Monograph, *, section_form: SectionForm | None = None, section_key: str = "",
                      preview: Markup | None = None, safety_form: SafetyForm | None = None,
                      review_form: ReviewForm | None = None, details_form: DetailsForm | None = None,
                      status: int = 200) -> tuple[str, int]:
    """The monograph editor; a posted form (with its typed text and errors) replaces its stored one."""
    forms = {s.key: SectionForm(formdata=None, prefix=f"s-{s.key}", title=s.title, body=s.body_markdown,
                                version=str(s.version)) for s in monograph.sections}
    if section_form is not None:
        forms[section_key] = section_form
    stored = {"formdata": None, "version": str(monograph.version)}
    return render_template(
        "admin/catalog/monograph_edit.html", monograph=monograph, section_forms=forms,
        rendered={s.key: render_markdown(s.body_markdown) for s in monograph.sections},
        preview_key=section_key if preview is not None else None, preview=preview,
        conflict_key=section_key if status == 409 else None,
        details_form=details_form or DetailsForm(prefix="details", title=monograph.title,
                                                 drug_name=monograph.drug_name,
                                                 drug_class=monograph.drug_class, summary=monograph.summary,
                                                 **stored),
        review_form=review_form or ReviewForm(prefix="review", last_reviewed=monograph.last_reviewed,
                                              reviewed_by=monograph.reviewed_by, **stored),
        safety_form=safety_form or SafetyForm(formdata=None, prefix="safety"),
        confirm=ConfirmForm(), kinds=monographs.SAFETY_KINDS,
    ), status


@bp.get("/monographs/<int:monograph_id>")
@access.admin
def monograph_edit(monograph_id: int) -> Any:
    """:raise 404: no such monograph."""
    return _render_monograph(_monograph_or_404(monograph_id))


def _save_monograph_form(monograph_id: int, form: FlaskForm, save: Callable[[int], object], done: str,
                         form_name: str) -> Any:
    """Save the details or the review form: 422 on bad input, 409 when someone saved meanwhile.
    :raise 404: no such monograph."""
    monograph = _monograph_or_404(monograph_id)
    if form.validate_on_submit():
        try:
            save(_seen_version(form["version"]))
        except LookupError:
            abort(404)
        except edit.EditConflict as conflict:
            _show_conflict(form, conflict)
            return _render_monograph(_monograph_or_404(monograph_id), status=409, **{form_name: form})
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(done, "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id))
    return _render_monograph(monograph, status=422, **{form_name: form})


@bp.post("/monographs/<int:monograph_id>/details")
@access.admin
def monograph_details(monograph_id: int) -> Any:
    """:raise 404: no such monograph. :raise 400: no version."""
    form = DetailsForm(prefix="details")
    fields = monographs.DetailsFields(title=form.title.data or "", drug_name=form.drug_name.data or "",
                                      drug_class=form.drug_class.data or "", summary=form.summary.data or "")
    return _save_monograph_form(
        monograph_id, form, lambda seen: monographs.update_details(_me(), monograph_id, fields, seen),
        "Details saved: the public page shows them now.", "details_form")


@bp.post("/monographs/<int:monograph_id>/review")
@access.admin
def review(monograph_id: int) -> Any:
    """:raise 404: no such monograph. :raise 400: no version."""
    form = ReviewForm(prefix="review")
    return _save_monograph_form(
        monograph_id, form, lambda seen: monographs.set_review(_me(), monograph_id, form.last_reviewed.data,
                                                               form.reviewed_by.data or "", seen),
        "Review date and reviewer saved.", "review_form")


@bp.post("/monographs/<int:monograph_id>/sections/<key>")
@access.admin
def section(monograph_id: int, key: str) -> Any:
    """Preview (nothing saved) or save one section. :raise 404: no such monograph or section.
    :raise 400: a save without a version."""
    monograph = _monograph_or_404(monograph_id)
    if key not in {s.key for s in monograph.sections}:
        abort(404)
    form = SectionForm(prefix=f"s-{key}")
    if request.form.get("action") == "preview":
        form.validate_on_submit()  # shows length errors beside the fields; a preview never saves
        return _render_monograph(monograph, section_form=form, section_key=key,
                                 preview=render_markdown(form.body.data or ""))
    if form.validate_on_submit():
        try:
            monographs.update_section(_me(), monograph_id, key, form.title.data or "", form.body.data or "",
                                      _seen_version(form.version))
        except LookupError:
            abort(404)
        except edit.EditConflict as conflict:
            _show_conflict(form, conflict)
            return _render_monograph(_monograph_or_404(monograph_id), section_form=form, section_key=key,
                                     status=409)
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"Section {form.title.data!r} saved: the public page shows it now.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=f"section-{key}"))
    return _render_monograph(_monograph_or_404(monograph_id), section_form=form, section_key=key, status=422)


# Safety entries ------------------------------------------------------------------------------------


def _safety_fields(form: SafetyForm) -> monographs.SafetyFields:
    return monographs.SafetyFields(kind=form.kind.data or "", term=form.term.data or "",
                                   severity=form.severity.data or "", note=form.note.data or "",
                                   match_terms=form.match_terms.data or "")


@bp.post("/monographs/<int:monograph_id>/safety")
@access.admin
def safety_add(monograph_id: int) -> Any:
    """:raise 404: no such monograph."""
    monograph = _monograph_or_404(monograph_id)
    form = SafetyForm(prefix="safety")
    if form.validate_on_submit():
        try:
            entry = monographs.add_safety_entry(_me(), monograph_id, _safety_fields(form))
        except LookupError:
            abort(404)
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{monographs.SAFETY_KINDS[entry.kind]} {entry.term!r} added: the pharmacist's safety "
                  "check uses it from now on.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))
    return _render_monograph(monograph, safety_form=form, status=422)


def _entry_or_404(monograph_id: int, entry_id: int) -> SafetyEntry:
    entry = db.session.get(SafetyEntry, entry_id)
    if entry is None or entry.monograph_id != monograph_id:
        abort(404)
    return entry


@bp.route("/monographs/<int:monograph_id>/safety/<int:entry_id>", methods=["GET", "POST"])
@access.admin
def safety_edit(monograph_id: int, entry_id: int) -> Any:
    """:raise 404: no such safety entry of this monograph."""
    entry = _entry_or_404(monograph_id, entry_id)
    if request.method == "GET":
        form = SafetyForm(kind=entry.kind, term=entry.term, severity=entry.severity, note=entry.note,
                          match_terms=entry.match_terms)
    else:
        form = SafetyForm()
    if form.validate_on_submit():
        try:
            monographs.update_safety_entry(_me(), monograph_id, entry_id, _safety_fields(form))
        except LookupError:
            abort(404)
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash("Safety entry saved.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))
    entry = _entry_or_404(monograph_id, entry_id)
    return render_template("admin/catalog/safety_form.html", entry=entry,
                           monograph=db.session.get(Monograph, monograph_id), form=form), _status()


@bp.post("/monographs/<int:monograph_id>/safety/<int:entry_id>/remove")
@access.admin
def safety_remove(monograph_id: int, entry_id: int) -> Response:
    """:raise 404: no such safety entry of this monograph."""
    _confirmed()
    try:
        term = monographs.remove_safety_entry(_me(), monograph_id, entry_id)
    except LookupError:
        abort(404)
    flash(f"{term!r} removed: the safety check no longer uses it.", "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))


# Uses, dosing rows and questions -------------------------------------------------------------------

ROW_URL = "/monographs/<int:monograph_id>/<any(uses, dosing, faq):kind>"


def _row_anchor(kind: str, row: Any) -> str:
    """Where the row's table is on the monograph editor."""
    if kind == "uses":
        return "uses-approved" if row.approved else "uses-off-label"
    return "dosing-rows" if kind == "dosing" else "faq"


def _row_or_404(monograph_id: int, kind: str, row_id: int) -> Any:
    row = db.session.get(monographs.ROW_KINDS[kind].model, row_id)
    if row is None or row.monograph_id != monograph_id:
        abort(404)
    return row


def _row_page(monograph_id: int, kind: str, row: Any | None) -> Any:
    """The add (row None) or edit page of a use, dosing row or question. "preview" shows a question's
    answer as the public page will, saving nothing. :raise 404: no such monograph."""
    monograph = _monograph_or_404(monograph_id)
    row_kind, form_class = monographs.ROW_KINDS[kind], ROW_FORMS[kind]
    if request.method == "POST":
        form = form_class()
    elif row is not None:
        form = form_class(formdata=None, **row_form_data(kind, row))
    else:  # a new use starts approved or off-label as the link that led here says
        form = form_class(formdata=None, approved=request.args.get("approved", "approved"))
    preview = None
    if form.validate_on_submit():
        if request.form.get("action") == "preview" and "answer" in form:
            preview = render_markdown(form["answer"].data or "")
        else:
            try:
                if row is None:
                    saved = monographs.add_row(_me(), monograph_id, row_kind, row_fields(form))
                else:
                    saved = monographs.update_row(_me(), monograph_id, row_kind, row.id, row_fields(form))
            except LookupError:
                abort(404)
            except edit.EditRefused as error:
                apply_errors(form, error.errors)
            else:
                flash(f"{row_kind.noun.capitalize()} {row_kind.name_of(saved)!r} "
                      f"{'added' if row is None else 'saved'}: the public page shows it now.", "success")
                return redirect(url_for(".monograph_edit", monograph_id=monograph_id,
                                        _anchor=_row_anchor(kind, saved)))
    status = 200 if request.method == "GET" or (preview is not None and not form.errors) else 422
    return render_template("admin/catalog/row_form.html", monograph=monograph, kind=kind, noun=row_kind.noun,
                           row=row, name=row_kind.name_of(row) if row is not None else "", form=form,
                           preview=preview), status


@bp.route(f"{ROW_URL}/new", methods=["GET", "POST"])
@access.admin
def row_new(monograph_id: int, kind: str) -> Any:
    """Add a use, dosing row or question. :raise 404: no such monograph."""
    return _row_page(monograph_id, kind, None)


@bp.route(f"{ROW_URL}/<int:row_id>", methods=["GET", "POST"])
@access.admin
def row_edit(monograph_id: int, kind: str, row_id: int) -> Any:
    """Edit a use, dosing row or question. :raise 404: no such row of this monograph."""
    return _row_page(monograph_id, kind, _row_or_404(monograph_id, kind, row_id))


@bp.post(f"{ROW_URL}/<int:row_id>/remove")
@access.admin
def row_remove(monograph_id: int, kind: str, row_id: int) -> Response:
    """:raise 404: no such row of this monograph."""
    _confirmed()
    anchor = _row_anchor(kind, _row_or_404(monograph_id, kind, row_id))
    row_kind = monographs.ROW_KINDS[kind]
    try:
        name = monographs.remove_row(_me(), monograph_id, row_kind, row_id)
    except LookupError:
        abort(404)
    flash(f"{row_kind.noun.capitalize()} {name!r} removed: the public page no longer shows it.", "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=anchor))


@bp.post(f"{ROW_URL}/<int:row_id>/move")
@access.admin
def row_move(monograph_id: int, kind: str, row_id: int) -> Response:
    """Move a row up or down its table. :raise 404: no such row of this monograph.
    :raise 400: a direction other than up or down."""
    _confirmed()
    direction = request.form.get("direction")
    if direction not in ("up", "down"):
        abort(400)
    anchor = _row_anchor(kind, _row_or_404(monograph_id, kind, row_id))
    try:
        name = monographs.move_row(_me(), monograph_id, monographs.ROW_KINDS[kind], row_id, direction == "up")
    except LookupError:
        abort(404)
    except edit.EditRefused as error:
        flash(str(error), "info")
    else:
        flash(f"{name!r} moved {direction}.", "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=anchor))
