"""Admin catalog and monograph editing: products, brand names and synonyms, strengths, monograph
sections (with a preview), safety entries and the review date. The rules live in catalog_edit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms import (
    BooleanField,
    DateField,
    DecimalField,
    IntegerField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.admin import catalog_edit as edit
from shop.catalog.models import SEVERITIES, Monograph, Product, SafetyEntry, Strength
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.markdown import render_markdown

bp = Blueprint("admin_catalog", __name__, url_prefix="/admin/catalog")

SLUG_HELP = "Lower-case letters, digits and hyphens; leave empty to make it from the {source}."


# Forms ---------------------------------------------------------------------------------------------


class ProductForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=120)],
                       description="As customers see it, e.g. Naltrexone.")
    slug = StringField("Slug (web address)", validators=[Length(max=80)],
                       description=SLUG_HELP.format(source="name") + " Changing it changes the product's "
                                                                      "public address.")
    generic_name = StringField("Generic name", validators=[Length(max=120)],
                               description="e.g. naltrexone hydrochloride")
    short_description = TextAreaField("Short description", validators=[Length(max=edit.MAX_DESCRIPTION)],
                                      description="One or two sentences for the product list.")
    monograph_id = SelectField("Monograph", coerce=str)
    prescription_only = BooleanField("Prescription only",
                                     description="Customers need an approved prescription to check out.")
    controlled_substance = BooleanField(
        "Controlled substance",
        description="A controlled substance can never be bought from this shop: it may be listed for "
                    "information, but it cannot be added to a cart and no cart holding it can check out. "
                    "Controlled substances are always prescription-only.")
    submit = SubmitField("Save product")


class AliasForm(FlaskForm):
    kind = SelectField("Kind", choices=[SelectChoice(k, v) for k, v in edit.ALIAS_KINDS.items()])
    name = StringField("Name", validators=[Length(max=120)])


class StrengthForm(FlaskForm):
    label = StringField("Label", validators=[Length(max=40)], description="As customers see it, e.g. 50 mg.")
    slug = StringField("Slug (web address)", validators=[Length(max=40)],
                       description=SLUG_HELP.format(source="label"))
    amount = DecimalField("Amount in one unit", places=None, validators=[Optional()],
                          description="e.g. 50 or 1.5; the pharmacist's dose check uses it with the unit.")
    unit = SelectField("Unit", choices=[SelectChoice(u, u) for u in edit.UNITS], default="mg")
    dosage_form = StringField("Dosage form", validators=[Length(max=80)],
                              description="e.g. film-coated tablet, compounded capsule")
    position = IntegerField("Order on the product page", validators=[Optional()],
                            description="0 comes first; leave empty to keep it (or, new, to put it last).")
    submit = SubmitField("Save strength")


class NewStrengthForm(StrengthForm):
    units = IntegerField("First package: tablets or capsules", validators=[Optional()],
                         description="Add more packages, and change prices, in the price editor.")
    price = StringField("First package: price", validators=[Length(max=20)], description="e.g. 214.24")
    submit = SubmitField("Add strength")


class SectionForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=120)])
    body = TextAreaField("Text (Markdown)", validators=[Length(max=edit.MAX_SECTION)],
                         render_kw={"rows": 12},
                         description="Headings start at ###. Raw HTML is shown as text, never run.")


class SafetyForm(FlaskForm):
    kind = SelectField("Kind", choices=[SelectChoice(k, v) for k, v in edit.SAFETY_KINDS.items()])
    term = StringField("What", validators=[Length(max=160)], description="e.g. Opioid analgesics")
    severity = SelectField("Severity", choices=[SelectChoice(s, s.capitalize()) for s in SEVERITIES])
    match_terms = TextAreaField(
        "Triggered by", validators=[Length(max=5000)], render_kw={"rows": 4},
        description="One word or phrase a line. Found as whole words in a patient's medications or "
                    "conditions, it shows this entry to the pharmacist reviewing a prescription. Leave "
                    "empty for an entry that should not be raised automatically (e.g. alcohol).")
    note = TextAreaField("Why it matters", validators=[Length(max=edit.MAX_NOTE)], render_kw={"rows": 3})
    submit = SubmitField("Save entry")


class ReviewForm(FlaskForm):
    last_reviewed = DateField("Last reviewed on", validators=[Optional()])
    reviewed_by = StringField("Reviewed by", validators=[Length(max=120)],
                              description="Name and qualification, e.g. Dana Reyes, PharmD.")
    submit = SubmitField("Save review")


_me = access.me


def _confirmed() -> None:
    """A button-only POST: :raise 400: without a valid CSRF token."""
    if not ConfirmForm().validate_on_submit():
        abort(400)


def _status() -> int:
    return 422 if request.method == "POST" else 200


# Products ------------------------------------------------------------------------------------------


def _monograph_choices(form: ProductForm) -> None:
    form.monograph_id.choices = [SelectChoice("", "No monograph")] + [
        SelectChoice(str(m.id), m.title) for m in edit.all_monographs()]


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


def _render_product(product: Product, form: ProductForm | None = None, alias_form: AliasForm | None = None,
                    status: int = 200) -> tuple[str, int]:
    if form is None:
        form = ProductForm(formdata=None, name=product.name, slug=product.slug,
                           generic_name=product.generic_name, short_description=product.short_description,
                           monograph_id=str(product.monograph_id or ""),
                           prescription_only=product.prescription_only,
                           controlled_substance=product.controlled_substance)
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
    form = ProductForm()
    _monograph_choices(form)
    if form.validate_on_submit():
        try:
            edit.update_product(_me(), product_id, _product_fields(form))
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
        form = StrengthForm(label=strength.label, slug=strength.slug, amount=strength.amount.normalize(),
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
    return render_template("admin/catalog/monograph_list.html", monographs=edit.all_monographs())


def _monograph_or_404(monograph_id: int) -> Monograph:
    monograph = edit.monograph_for_edit(monograph_id)
    if monograph is None:
        abort(404)
    return monograph


def _section_form(key: str, title: str = "", body: str = "", posted: bool = False) -> SectionForm:
    if posted:
        return SectionForm(prefix=f"s-{key}")
    return SectionForm(formdata=None, prefix=f"s-{key}", title=title, body=body)


def _render_monograph(monograph: Monograph, *, posted: SectionForm | None = None, posted_key: str = "",
                      preview: Markup | None = None, safety_form: SafetyForm | None = None,
                      review_form: ReviewForm | None = None, status: int = 200) -> tuple[str, int]:
    forms = {s.key: _section_form(s.key, s.title, s.body_markdown) for s in monograph.sections}
    if posted is not None:
        forms[posted_key] = posted
    rendered = {s.key: render_markdown(s.body_markdown) for s in monograph.sections}
    review = review_form or ReviewForm(formdata=None, prefix="review", last_reviewed=monograph.last_reviewed,
                                       reviewed_by=monograph.reviewed_by)
    return render_template(
        "admin/catalog/monograph_edit.html", monograph=monograph, section_forms=forms, rendered=rendered,
        preview_key=posted_key if preview is not None else None, preview=preview,
        safety_form=safety_form or SafetyForm(formdata=None, prefix="safety"), review_form=review,
        confirm=ConfirmForm(), kinds=edit.SAFETY_KINDS,
    ), status


@bp.get("/monographs/<int:monograph_id>")
@access.admin
def monograph_edit(monograph_id: int) -> Any:
    """:raise 404: no such monograph."""
    return _render_monograph(_monograph_or_404(monograph_id))


@bp.post("/monographs/<int:monograph_id>/sections/<key>")
@access.admin
def section(monograph_id: int, key: str) -> Any:
    """Preview (nothing saved) or save one section. :raise 404: no such monograph or section."""
    monograph = _monograph_or_404(monograph_id)
    if key not in {s.key for s in monograph.sections}:
        abort(404)
    form = _section_form(key, posted=True)
    if request.form.get("action") == "preview":
        form.validate_on_submit()  # shows length errors beside the fields; a preview never saves
        return _render_monograph(monograph, posted=form, posted_key=key,
                                 preview=render_markdown(form.body.data or ""))
    if form.validate_on_submit():
        try:
            edit.update_section(_me(), monograph_id, key, form.title.data or "", form.body.data or "")
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"Section {form.title.data!r} saved: the public page shows it now.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=f"section-{key}"))
    return _render_monograph(_monograph_or_404(monograph_id), posted=form, posted_key=key, status=422)


def _safety_fields(form: SafetyForm) -> edit.SafetyFields:
    return edit.SafetyFields(kind=form.kind.data or "", term=form.term.data or "",
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
            entry = edit.add_safety_entry(_me(), monograph_id, _safety_fields(form))
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{edit.SAFETY_KINDS[entry.kind]} {entry.term!r} added: the pharmacist's safety check "
                  "uses it from now on.", "success")
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
            edit.update_safety_entry(_me(), monograph_id, entry_id, _safety_fields(form))
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
        term = edit.remove_safety_entry(_me(), monograph_id, entry_id)
    except LookupError:
        abort(404)
    flash(f"{term!r} removed: the safety check no longer uses it.", "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))


@bp.post("/monographs/<int:monograph_id>/review")
@access.admin
def review(monograph_id: int) -> Any:
    """:raise 404: no such monograph."""
    monograph = _monograph_or_404(monograph_id)
    form = ReviewForm(prefix="review")
    if form.validate_on_submit():
        try:
            edit.set_review(_me(), monograph_id, form.last_reviewed.data, form.reviewed_by.data or "")
        except edit.EditRefused as error:
            apply_errors(form, error.errors)
        else:
            flash("Review date and reviewer saved.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id))
    return _render_monograph(monograph, review_form=form, status=422)
