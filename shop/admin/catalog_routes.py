"""Admin catalog editing: products, their brand names and synonyms, and strengths. The rules live in
catalog_edit, the forms in catalog_forms; the blueprint and the helpers shared with monograph_routes
(which this module imports, so that registering `bp` registers the monograph pages too) in
catalog_blueprint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.admin import catalog_edit as edit
from shop.admin import monograph_edit as monographs
from shop.admin import monograph_routes  # noqa: F401  (its routes join bp)
from shop.admin.catalog_blueprint import bp, confirmed, form_status, seen_version, show_conflict
from shop.admin.catalog_forms import (
    AliasForm,
    NewStrengthForm,
    ProductEditForm,
    ProductForm,
    StrengthForm,
    plain_decimal,
)
from shop.admin.common import Refused, or_404
from shop.admin.versions import EditConflict
from shop.catalog.models import Product, Strength
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.numbers import parse_id

_me = access.me


# Products ------------------------------------------------------------------------------------------


def _monograph_choices(form: ProductForm) -> None:
    form.monograph_id.choices = [SelectChoice("", "No monograph")] + [
        SelectChoice(str(m.id), m.title) for m in monographs.all_monographs()]


def _product_fields(form: ProductForm) -> edit.ProductFields:
    return edit.ProductFields(
        name=form.name.data or "", slug=form.slug.data or "", generic_name=form.generic_name.data or "",
        short_description=form.short_description.data or "",
        prescription_only=bool(form.prescription_only.data),
        controlled_substance=bool(form.controlled_substance.data),
        monograph_id=parse_id(form.monograph_id.data),
    )


def _product_or_404(product_id: int) -> Product:
    return or_404(edit.product_for_edit(product_id))


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
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{product.name} is created. It stays hidden from the shop until you add a strength "
                  "and activate it.", "success")
            return redirect(url_for(".product_edit", product_id=product.id))
    return render_template("admin/catalog/product_new.html", form=form), form_status()


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
            edit.update_product(_me(), product_id, _product_fields(form), seen_version(form.version))
        except LookupError:
            abort(404)
        except EditConflict as conflict:
            show_conflict(form, conflict)
            return _render_product(_product_or_404(product_id), form, status=409)
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash("Product saved.", "success")
            return redirect(url_for(".product_edit", product_id=product_id))
    return _render_product(_product_or_404(product_id), form, status=422)


def _product_action(product_id: int, action: Callable[[], object], done: str) -> Response:
    confirmed()
    try:
        action()
    except LookupError:
        abort(404)
    except Refused as error:
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
    confirmed()
    try:
        name = edit.delete_product(_me(), product_id)
    except LookupError:
        abort(404)
    except Refused as error:
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
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{edit.ALIAS_KINDS[alias.kind]} {alias.name!r} added.", "success")
            return redirect(url_for(".product_edit", product_id=product_id, _anchor="aliases"))
    return _render_product(product, alias_form=form, status=422)


@bp.post("/products/<int:product_id>/aliases/<int:alias_id>/remove")
@access.admin
def alias_remove(product_id: int, alias_id: int) -> Response:
    """:raise 404: no such brand name or synonym of this product."""
    confirmed()
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
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{strength.label} is added with its first package.", "success")
            return redirect(url_for(".product_edit", product_id=product_id, _anchor="strengths"))
    return render_template("admin/catalog/strength_form.html", product=product, strength=None,
                           form=form), form_status()


def _strength_or_404(strength_id: int) -> Strength:
    return or_404(db.session.get(Strength, strength_id))


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
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash("Strength saved.", "success")
            return redirect(url_for(".product_edit", product_id=strength.product_id, _anchor="strengths"))
    strength = _strength_or_404(strength_id)
    return render_template("admin/catalog/strength_form.html", product=strength.product, strength=strength,
                           form=form), form_status()


def _warn_if_nothing_left(product: Product) -> None:
    if product.active and not product.active_strengths:
        flash(f"{product.name} has no active strength left, so the shop shows it without prices: "
              "deactivate the product too, or add a strength.", "error")


def _strength_action(strength_id: int, active: bool) -> Response:
    confirmed()
    try:
        strength = edit.set_strength_active(_me(), strength_id, active)
    except LookupError:
        abort(404)
    except Refused as error:
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
    confirmed()
    product_id = _strength_or_404(strength_id).product_id
    try:
        label = edit.delete_strength(_me(), strength_id)
    except LookupError:
        abort(404)
    except Refused as error:
        flash(str(error), "error")
    else:
        flash(f"{label} is deleted.", "success")
        _warn_if_nothing_left(_product_or_404(product_id))
    return redirect(url_for(".product_edit", product_id=product_id, _anchor="strengths"))
