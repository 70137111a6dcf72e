"""The price list as CSV: export every package, and import a file that changes existing packages' prices
and whether they are on sale.

An import checks every row first and applies nothing if any is wrong; a good file is applied in one
transaction, with a history row and an audit row per change (as the price editor records them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from shop import audit, money
from shop.accounts.models import User
from shop.admin import csv_files
from shop.admin.common import write_transaction
from shop.admin.prices import REASON_MAX, parse_typed_price, parse_units, plain_amount, record_change
from shop.audit import utcnow
from shop.catalog.models import Package, Product, Strength
from shop.extensions import db

LAYOUT = csv_files.CsvLayout(columns=("product_slug", "strength_slug", "units", "price", "active"),
                             max_bytes=1024 * 1024, max_rows=5_000)
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")


def export_csv() -> str:
    """Every package, on sale or retired: product_slug,strength_slug,units,price,active."""
    rows = db.session.execute(
        sa.select(Product.slug, Strength.slug, Package.units, Package.price_cents, Package.active)
        .join(Strength, Strength.product_id == Product.id).join(Package, Package.strength_id == Strength.id)
        .order_by(Product.slug, Strength.position, Strength.id, Package.units)).all()
    return csv_files.csv_text(LAYOUT.columns, (
        (product_slug, strength_slug, units, plain_amount(price), "true" if active else "false")
        for product_slug, strength_slug, units, price, active in rows))


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str


class ImportRefused(Exception):
    """Nothing was imported: a problem with the file as a whole, or the rows listed."""

    def __init__(self, message: str, rows: Sequence[RowProblem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.rows = list(rows)


@dataclass(frozen=True)
class ImportReport:
    rows: int
    changed_rows: int
    price_changes: int
    retired: int
    restored: int

    @property
    def unchanged(self) -> int:
        return self.rows - self.changed_rows


@dataclass
class _Row:
    line: int
    package: Package
    price: int
    active: bool


def _clause(text: str) -> str:
    """A field message as part of a row's list of problems: "A price ..." -> "a price ..."."""
    return (text[:1].lower() + text[1:]).rstrip(".")


def _check_row(row: csv_files.CsvRow, packages: Mapping[tuple[str, str, int], Package]
               ) -> tuple[Package | None, int, bool, list[str]]:
    if row.problem:
        return None, 0, False, [_clause(row.problem)]
    values = row.cells
    problems = [f"{name} is empty" for name in LAYOUT.columns if not values[name]]
    units = price = 0
    active = False
    if values["units"]:
        try:
            units = parse_units(values["units"])
        except ValueError as error:
            problems.append(f"units {values['units']!r}: {_clause(str(error))}")
    if values["price"]:
        try:
            price = parse_typed_price(values["price"])
        except money.InvalidPrice as error:
            problems.append(f"price {values['price']!r}: {_clause(str(error))}")
    if values["active"]:
        word = values["active"].lower()
        if word not in TRUE_WORDS + FALSE_WORDS:
            problems.append(f"active must be true or false, not {values['active']!r}")
        active = word in TRUE_WORDS
    package = None
    if units and values["product_slug"] and values["strength_slug"]:
        package = packages.get((values["product_slug"], values["strength_slug"], units))
        if package is None:
            problems.append(f"no {units} pack of {values['product_slug']} {values['strength_slug']}: the "
                            "import changes existing packages only (add new sizes in the price editor)")
    return package, price, active, problems


def _checked_rows(rows: list[csv_files.CsvRow], all_packages: Sequence[Package]) -> list[_Row]:
    """The file's rows as changes to packages. :raise ImportRefused: listing every bad row."""
    by_key = {(p.strength.product.slug, p.strength.slug, p.units): p for p in all_packages}
    problems: list[RowProblem] = []
    seen: dict[int, int] = {}  # package id -> line
    good: list[_Row] = []
    for row in rows:
        package, price, active, reasons = _check_row(row, by_key)
        if package is not None and package.id in seen:
            reasons.append(f"the same package as line {seen[package.id]}")
        if reasons:
            problems.append(RowProblem(row.line, "; ".join(reasons)))
            continue
        assert package is not None
        seen[package.id] = row.line
        good.append(_Row(row.line, package, price, active))
    # A strength on sale must keep at least one package on sale (see prices.retire_package).
    final = {p.id: p.active for p in all_packages} | {r.package.id: r.active for r in good}
    on_sale_after: dict[int, int] = {}
    for p in all_packages:
        on_sale_after[p.strength_id] = on_sale_after.get(p.strength_id, 0) + final[p.id]
    for row in good:
        strength = row.package.strength
        if row.package.active and not row.active and not on_sale_after[strength.id]:
            name = f"{strength.product.name} {strength.label}"
            problems.append(RowProblem(row.line, f"would take the last package of {name} off sale"))
    if problems:
        raise ImportRefused(f"{len(problems)} row{'s' if len(problems) != 1 else ''} "
                            f"{'have' if len(problems) != 1 else 'has'} problems: nothing was imported.",
                            sorted(problems, key=lambda p: p.line))
    return good


def import_csv(data: bytes, actor: User, *, filename: str = "",
               now: dt.datetime | None = None) -> ImportReport:
    """Apply a price file: every row is checked first, and if any is wrong nothing is applied.

    Rows name existing packages by (product_slug, strength_slug, units) and may change their price
    and whether they are on sale. A good file is applied in one transaction, with a history row and
    an audit row per change.

    :raise ImportRefused: with the reason, and each bad row with its line number.
    """
    now = now or utcnow()
    try:
        rows = csv_files.read_csv(data, LAYOUT)
    except csv_files.CsvRefused as refused:
        raise ImportRefused(refused.message) from None
    with write_transaction():
        all_packages = db.session.scalars(
            sa.select(Package).join(Strength).join(Product)
            .options(joinedload(Package.strength).joinedload(Strength.product))
            .with_for_update(of=Package).execution_options(populate_existing=True)).all()
        good = _checked_rows(rows, all_packages)
        reason = f"CSV import {filename}".strip()[:REASON_MAX]
        changed_rows = prices_changed = retired = restored = 0
        for row in good:
            package = row.package
            old_price, old_active = package.price_cents, package.active
            if row.price == old_price and row.active == old_active:
                continue
            changed_rows += 1
            package.version += 1
            if row.price != old_price:
                package.price_cents = row.price
                prices_changed += 1
                record_change(package, "price", old_price, row.price, actor, reason, now)
                audit.record("price.changed", object_type="package", object_id=package.id, actor=actor,
                             strength_id=package.strength_id, units=package.units, old_price_cents=old_price,
                             new_price_cents=row.price, reason=reason, line=row.line)
            if row.active != old_active:
                package.active = row.active
                kind = "restored" if row.active else "retired"
                retired += not row.active
                restored += row.active
                record_change(package, kind, row.price, row.price, actor, reason, now)
                audit.record(f"package.{kind}", object_type="package", object_id=package.id, actor=actor,
                             strength_id=package.strength_id, units=package.units, reason=reason,
                             line=row.line)
        audit.record("prices.imported", object_type="price_file", object_id=filename or None, actor=actor,
                     rows=len(good), price_changes=prices_changed, retired=retired, restored=restored)
        db.session.commit()
    return ImportReport(len(good), changed_rows, prices_changed, retired, restored)
