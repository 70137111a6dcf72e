"""Admin edits to the catalog: products, brand names and synonyms, strengths.

Each writing function owns its transaction: begin_write() first, then its reads and checks, then the
change and its audit row, committed together. A refusal raises common.Refused with {field: message}
having changed nothing. Records that orders, carts, prescriptions or the stock ledger refer to are
never deleted: they are deactivated instead, which hides them from the shop and stops their sale.
A product carries a version, checked on save (see versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from shop import audit, money
from shop.admin.common import commit_or_refuse, existing, flush_or_refuse, refuse
from shop.admin.field_rules import check_amount, check_slug, clean, require
from shop.admin.versions import apply_changes, save_versioned, shown
from shop.audit import utcnow
from shop.cart.models import CartLine
from shop.catalog.models import (
    Monograph,
    Package,
    Product,
    ProductAlias,
    Strength,
    search_key,
)
from shop.catalog.price_models import PriceChange
from shop.database import LIKE_ESCAPE, begin_write, contains_pattern
from shop.extensions import db
from shop.inventory.models import StockLot, StockMovement
from shop.orders.models import OrderLine
from shop.prescriptions.models import Prescription

UNITS = ("mg", "mcg", "g", "mL", "mg/mL", "IU", "%")
ALIAS_KINDS = {"brand": "Brand name", "synonym": "Synonym"}
MAX_PACKAGE_UNITS = 10_000
MAX_DESCRIPTION = 1000


# Reading -------------------------------------------------------------------------------------------


def admin_products(query: str = "") -> list[Product]:
    """Every product, active or not, whose name, generic name, slug or alias contains the query."""
    stmt = sa.select(Product).order_by(Product.name).options(
        selectinload(Product.strengths).selectinload(Strength.packages),
        selectinload(Product.aliases),
    )
    key = search_key(query[:100])
    if key:
        pattern = contains_pattern(key)

        def matches(column: Any) -> Any:
            normalised = sa.func.lower(sa.func.replace(sa.func.replace(column, "-", " "), ".", " "))
            return normalised.like(pattern, escape=LIKE_ESCAPE)

        alias_hit = (sa.select(ProductAlias.id).where(ProductAlias.product_id == Product.id)
                     .where(ProductAlias.search_key.like(pattern, escape=LIKE_ESCAPE)).exists())
        stmt = stmt.where(sa.or_(matches(Product.name), matches(Product.generic_name),
                                 matches(Product.slug), alias_hit))
    return list(db.session.scalars(stmt))


def product_for_edit(product_id: int) -> Product | None:
    stmt = sa.select(Product).where(Product.id == product_id).options(
        selectinload(Product.strengths).selectinload(Strength.packages),
        selectinload(Product.aliases),
    )
    return db.session.scalars(stmt).first()


# What refers to a product or strength --------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _count(stmt: sa.Select) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0


def references(product_id: int | None, strength_ids: list[int]) -> list[str]:
    """What keeps a product (or just the given strengths) from being deleted, in words."""
    package_ids = list(db.session.scalars(sa.select(Package.id).where(Package.strength_id.in_(strength_ids))))
    line_match = [OrderLine.strength_id.in_(strength_ids), OrderLine.package_id.in_(package_ids)]
    rx_match = [Prescription.strength_id.in_(strength_ids)]
    if product_id is not None:
        line_match.append(OrderLine.product_id == product_id)
        rx_match += [Prescription.product_id == product_id, Prescription.requested_product_id == product_id]
    found = []
    lines = _count(sa.select(OrderLine.id).where(sa.or_(*line_match)))
    if lines:
        found.append(_plural(lines, "order line"))
    prescriptions = _count(sa.select(Prescription.id).where(sa.or_(*rx_match)))
    if prescriptions:
        found.append(_plural(prescriptions, "prescription"))
    carts = _count(sa.select(CartLine.id).where(CartLine.package_id.in_(package_ids)))
    if carts:
        found.append(_plural(carts, "cart line"))
    stock = _count(sa.select(StockLot.id).where(StockLot.strength_id.in_(strength_ids)))
    stock += _count(sa.select(StockMovement.id).where(StockMovement.strength_id.in_(strength_ids)))
    if stock:
        found.append("the stock ledger")
    return found


def _in_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# Products ------------------------------------------------------------------------------------------


@dataclass
class ProductFields:
    name: str
    slug: str
    generic_name: str
    short_description: str
    prescription_only: bool
    controlled_substance: bool
    monograph_id: int | None


def _product_values(fields: ProductFields, product_id: int | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    name, generic = clean(fields.name), clean(fields.generic_name)
    description = (fields.short_description or "").strip()
    require(errors, "name", name, 120, "the product's name")
    require(errors, "generic_name", generic, 120, "the generic name")
    slug = check_slug(errors, fields.slug or "", name, 80)
    if "slug" not in errors and slug:
        taken = db.session.scalar(sa.select(Product.name).where(Product.slug == slug,
                                                                Product.id != (product_id or 0)))
        if taken is not None:
            errors["slug"] = f"{taken} already uses the slug {slug!r}; choose another."
    if len(description) > MAX_DESCRIPTION:
        errors["short_description"] = f"At most {MAX_DESCRIPTION} characters."
    if fields.controlled_substance and not fields.prescription_only:
        errors["prescription_only"] = "A controlled substance is always prescription-only: tick both."
    if fields.monograph_id is not None and db.session.get(Monograph, fields.monograph_id) is None:
        errors["monograph_id"] = "Choose a monograph from the list."
    if errors:
        refuse(errors)
    return {"name": name, "slug": slug, "generic_name": generic, "short_description": description,
            "prescription_only": fields.prescription_only,
            "controlled_substance": fields.controlled_substance, "monograph_id": fields.monograph_id}


def _slug_conflict(slug: str) -> dict[str, str]:
    return {"slug": f"Another record took the slug {slug!r} just now; choose another."}


def create_product(actor: Any, fields: ProductFields) -> Product:
    """A new product, inactive until it has a strength and is activated. :raise Refused:"""
    begin_write()
    values = _product_values(fields, None)
    product = Product(**values, active=False)
    db.session.add(product)
    flush_or_refuse(_slug_conflict(values["slug"]))
    audit.record("catalog.product_created", object_type="product", object_id=product.id, actor=actor,
                 **{k: v for k, v in values.items() if k != "short_description"})
    commit_or_refuse(_slug_conflict(values["slug"]))
    return product


def update_product(actor: Any, product_id: int, fields: ProductFields, seen_version: int) -> Product:
    """Save the details form, read at `seen_version`. Values equal to the stored ones save nothing
    (nothing of anyone's would be lost), whatever the version.

    :raise LookupError: no such product. :raise Refused: bad input, nothing changed.
    :raise EditConflict: someone else saved the product since `seen_version`; nothing changed.
    """
    begin_write()
    product = existing(Product, product_id, populate_existing=True)
    values = _product_values(fields, product_id)
    changed = save_versioned(product, values, seen_version, "This product", describe=_describe_product_value)
    if changed is None:
        return product
    if "short_description" in changed:
        changed["short_description"] = ["…", "…"]  # the text itself is not worth a log line
    audit.record("catalog.product_updated", object_type="product", object_id=product.id, actor=actor,
                 changes=changed, version=product.version)
    commit_or_refuse(_slug_conflict(values["slug"]))
    return product


def _describe_product_value(name: str, value: Any) -> str:
    if name == "monograph_id":
        monograph = db.session.get(Monograph, value) if value is not None else None
        return shown(monograph.title if monograph else "No monograph")
    return shown(value)


def _sellable_strengths(product: Product) -> list[Strength]:
    return [s for s in product.active_strengths if s.active_packages]


def set_product_active(actor: Any, product_id: int, active: bool) -> Product:
    """Show or hide a product in the shop. Hidden products cannot be added to or checked out of a
    cart. :raise LookupError: no such product. :raise Refused: it has nothing to sell."""
    begin_write()
    product = existing(Product, product_id)
    if active and not _sellable_strengths(product):
        refuse({"active": f"{product.name} has no active strength with a package yet: add one first."})
    if product.active != active:
        product.active = active
        audit.record("catalog.product_activated" if active else "catalog.product_deactivated",
                     object_type="product", object_id=product.id, actor=actor, slug=product.slug)
    db.session.commit()
    return product


def delete_product(actor: Any, product_id: int) -> str:
    """Delete a product nothing refers to; returns its name.

    :raise LookupError: no such product. :raise Refused: something refers to it.
    """
    begin_write()
    product = existing(Product, product_id)
    found = references(product.id, [s.id for s in product.strengths])
    if found:
        refuse({"delete": f"{product.name} cannot be deleted: {_in_words(found)} refer to it. "
                           "Deactivate it instead: it leaves the shop and can no longer be bought, "
                           "and those records keep it."})
    name = product.name
    audit.record("catalog.product_deleted", object_type="product", object_id=product.id, actor=actor,
                 slug=product.slug, name=name)
    db.session.delete(product)
    db.session.commit()
    return name


# Brand names and synonyms --------------------------------------------------------------------------


def add_alias(actor: Any, product_id: int, kind: str, name: str) -> ProductAlias:
    """:raise LookupError: no such product. :raise Refused: bad or duplicate name."""
    begin_write()
    product = existing(Product, product_id)
    errors: dict[str, str] = {}
    name = clean(name)
    key = search_key(name)
    if kind not in ALIAS_KINDS:
        errors["kind"] = "Choose brand name or synonym."
    require(errors, "name", name, 120, "the brand name or synonym")
    if "name" not in errors and not key:
        errors["name"] = "Enter a name with letters or digits."
    duplicate = next((a for a in product.aliases if a.search_key == key), None)
    if "name" not in errors and duplicate is not None:
        errors["name"] = f"{product.name} already has the name {duplicate.name!r}."
    if errors:
        refuse(errors)
    alias = ProductAlias(product_id=product.id, kind=kind, name=name, search_key=key,
                         position=max((a.position for a in product.aliases), default=-1) + 1)
    db.session.add(alias)
    conflict = {"name": f"{product.name} already has the name {name!r}."}
    flush_or_refuse(conflict)
    audit.record("catalog.alias_added", object_type="product", object_id=product.id, actor=actor,
                 kind=kind, name=name)
    commit_or_refuse(conflict)
    return alias


def remove_alias(actor: Any, product_id: int, alias_id: int) -> str:
    """Returns the removed name. :raise LookupError: no such alias of this product."""
    begin_write()
    alias = db.session.get(ProductAlias, alias_id)
    if alias is None or alias.product_id != product_id:
        db.session.rollback()
        raise LookupError(alias_id)
    name = alias.name
    audit.record("catalog.alias_removed", object_type="product", object_id=product_id, actor=actor,
                 kind=alias.kind, name=name)
    db.session.delete(alias)
    db.session.commit()
    return name


# Strengths -----------------------------------------------------------------------------------------


@dataclass
class StrengthFields:
    label: str
    slug: str
    amount: Decimal | None
    unit: str
    dosage_form: str
    position: int | None = None


def _strength_values(product: Product, fields: StrengthFields, strength: Strength | None) -> tuple[
        dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    label, form = clean(fields.label), clean(fields.dosage_form)
    require(errors, "label", label, 40, "the label customers see, e.g. 50 mg")
    require(errors, "dosage_form", form, 80, "the dosage form, e.g. film-coated tablet")
    slug = check_slug(errors, fields.slug or "", label, 40)
    if "slug" not in errors and slug and any(
            s.slug == slug and s is not strength for s in product.strengths):
        errors["slug"] = f"{product.name} already has a strength with the slug {slug!r}."
    amount = fields.amount
    if amount is None:
        errors["amount"] = "Enter the amount in one unit, e.g. 50 or 1.5."
    else:
        check_amount(errors, "amount", amount, not_positive="The amount must be more than zero.",
                     too_large="That amount is too large.")
    if fields.unit not in UNITS:
        errors["unit"] = "Choose a unit from the list."
    position = fields.position
    if position is None:
        position = strength.position if strength else max((s.position for s in product.strengths),
                                                          default=-1) + 1
    elif not 0 <= position <= 999:
        errors["position"] = "Enter a number from 0 to 999."
    values = {"label": label, "slug": slug, "amount": amount, "unit": fields.unit, "dosage_form": form,
              "position": position}
    return values, errors


def _package_values(units: int | None, price: str) -> tuple[int, int, dict[str, str]]:
    errors: dict[str, str] = {}
    if units is None or not 1 <= units <= MAX_PACKAGE_UNITS:
        errors["units"] = f"Enter the tablets or capsules in the first package (1 to {MAX_PACKAGE_UNITS:,})."
    cents = 0
    try:
        cents = money.parse_price(price or "")
    except money.InvalidPrice as error:
        errors["price"] = "Enter the package price, e.g. 214.24." if not (price or "").strip() \
            else f"{str(error)[0].upper()}{str(error)[1:]}."
    return units or 0, cents, errors


def _strength_conflict(slug: str) -> dict[str, str]:
    return {"slug": f"Another strength took the slug {slug!r} just now; choose another."}


def create_strength(actor: Any, product_id: int, fields: StrengthFields, units: int | None,
                    price: str) -> Strength:
    """A new active strength with its first package (the price editor adds more).

    :raise LookupError: no such product. :raise Refused: nothing changed.
    """
    begin_write()
    product = existing(Product, product_id)
    values, errors = _strength_values(product, fields, None)
    units_value, cents, package_errors = _package_values(units, price)
    errors.update(package_errors)
    if errors:
        refuse(errors)
    strength = Strength(product_id=product.id, **values, active=True)
    package = Package(units=units_value, price_cents=cents,
                      currency=current_app.config.get("CURRENCY", "USD"))
    strength.packages.append(package)
    db.session.add(strength)
    flush_or_refuse(_strength_conflict(values["slug"]))
    now = utcnow()
    # The price history starts with the package being added, like packages added in the price editor.
    db.session.add(PriceChange(package_id=package.id, kind="added", old_price_cents=None,
                               new_price_cents=cents, reason="First package of a new strength",
                               actor_id=getattr(actor, "id", None), created_at=now, effective_at=now,
                               applied_at=now))
    audit.record("catalog.strength_created", object_type="strength", object_id=strength.id, actor=actor,
                 product_id=product.id, label=values["label"], slug=values["slug"],
                 package_units=units_value, price_cents=cents)
    commit_or_refuse(_strength_conflict(values["slug"]))
    return strength


# Changing these would change what prescriptions authorise, what orders were for or what the stock is.
FIXED_ONCE_USED = {"amount": "amount", "unit": "unit", "dosage_form": "dosage form"}


def update_strength(actor: Any, strength_id: int, fields: StrengthFields) -> Strength:
    """:raise LookupError: no such strength. :raise Refused: nothing changed."""
    begin_write()
    strength = existing(Strength, strength_id)
    values, errors = _strength_values(strength.product, fields, strength)
    changing = [name for name in FIXED_ONCE_USED
                if name not in errors and values[name] != getattr(strength, name)]
    if changing:
        used = references(None, [strength.id])
        if used:
            for name in changing:
                errors[name] = (f"{_in_words(used).capitalize()} refer to this strength, so its "
                                f"{FIXED_ONCE_USED[name]} cannot change: add a new strength and "
                                "deactivate this one instead.")
    if errors:
        refuse(errors)
    changed = apply_changes(strength, values)
    if changed:
        audit.record("catalog.strength_updated", object_type="strength", object_id=strength.id,
                     actor=actor, product_id=strength.product_id, changes=changed)
    commit_or_refuse(_strength_conflict(values["slug"]))
    return strength


def set_strength_active(actor: Any, strength_id: int, active: bool) -> Strength:
    """:raise LookupError: no such strength. :raise Refused: activating one with no package."""
    begin_write()
    strength = existing(Strength, strength_id)
    if active and not strength.active_packages:
        refuse({"active": f"{strength.label} has no active package: add one in the price editor first."})
    if strength.active != active:
        strength.active = active
        audit.record("catalog.strength_activated" if active else "catalog.strength_deactivated",
                     object_type="strength", object_id=strength.id, actor=actor,
                     product_id=strength.product_id, label=strength.label)
    db.session.commit()
    return strength


def delete_strength(actor: Any, strength_id: int) -> str:
    """Delete a strength nothing refers to; returns its label.

    :raise LookupError: no such strength. :raise Refused: something refers to it.
    """
    begin_write()
    strength = existing(Strength, strength_id)
    found = references(None, [strength.id])
    if found:
        refuse({"delete": f"{strength.label} cannot be deleted: {_in_words(found)} refer to it. "
                           "Deactivate it instead: it leaves the shop and can no longer be bought, "
                           "and those records keep it."})
    label = strength.label
    audit.record("catalog.strength_deleted", object_type="strength", object_id=strength.id, actor=actor,
                 product_id=strength.product_id, label=label, slug=strength.slug)
    db.session.delete(strength)
    db.session.commit()
    return label
