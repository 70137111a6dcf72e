"""The price list as CSV: export every package, and import a file that changes existing packages' prices
and whether they are on sale.

An import checks every row first and applies nothing if any is wrong; a good file is applied in one
transaction, with a history row and an audit row per change (as the price editor records them).
Before applying, it gives the price editor's per-pill warnings (prices.per_pill_warnings) for every
strength the file changes: a file with warnings is applied only once the admin has seen exactly those
warnings and said to apply it anyway (ImportNeedsConfirmation carries what to show and confirm).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import joinedload

from shop import audit, money
from shop.accounts.models import User
from shop.admin import csv_files
from shop.admin.common import write_transaction
from shop.admin.prices import (
    REASON_MAX,
    parse_typed_price,
    parse_units,
    per_pill_warnings,
    plain_amount,
    record_change,
)
from shop.audit import utcnow
from shop.catalog.models import Package, Product, Strength
from shop.extensions import db
from shop.numbers import parse_int

# version is the package's version when the file was exported (Package.version, bumped by every change
# of its price or of whether it is on sale). A row of a package changed since may only say what the
# package is now: a file exported earlier never undoes a price change, a retirement or a restore made
# after it (the price editor's version rule, for files). A file made by hand may leave the column out
# (or a row its cell): its rows are then applied as they are, over any change made meanwhile, as the
# admin typed them with no export to compare with; the import's message says so.
LAYOUT = csv_files.CsvLayout(columns=("product_slug", "strength_slug", "units", "price", "active", "version"),
                             max_bytes=1024 * 1024, max_rows=5_000, optional=("version",))
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")


def export_csv() -> str:
    """Every package, on sale or retired: product_slug,strength_slug,units,price,active and its version."""
    rows = db.session.execute(
        sa.select(Product.slug, Strength.slug, Package.units, Package.price_cents, Package.active,
                  Package.version)
        .join(Strength, Strength.product_id == Product.id).join(Package, Package.strength_id == Strength.id)
        .order_by(Product.slug, Strength.position, Strength.id, Package.units)).all()
    return csv_files.csv_text(LAYOUT.columns, (
        (product_slug, strength_slug, units, plain_amount(price), "true" if active else "false", version)
        for product_slug, strength_slug, units, price, active, version in rows))


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
    warnings: list[str] = field(default_factory=list)  # per-pill warnings the admin chose to accept
    unversioned: int = 0  # rows without a version: applied as they are, over any change made meanwhile

    @property
    def unchanged(self) -> int:
        return self.rows - self.changed_rows


class ImportNeedsConfirmation(Exception):
    """Nothing was imported: the file is good but gives per-pill warnings. `report` says what applying
    it would do; `accept` vouches for this very file with these warnings and this report
    (import_csv(accept=...) applies the file while they are still what it gives)."""

    def __init__(self, warnings: list[str], report: ImportReport, accept: str) -> None:
        super().__init__("; ".join(warnings))
        self.warnings = warnings
        self.report = report
        self.accept = accept


def confirmation_key(data: bytes, warnings: Sequence[str], report: ImportReport) -> str:
    """What the admin saw and accepted, signed with the app's secret key: the file's bytes, its warnings
    and the report's counts. Another file (say, one that also retires a package) with the same warnings
    gets another key, and nobody without the secret key can make one."""
    secret = current_app.config["SECRET_KEY"]
    mac = hmac.new(secret.encode() if isinstance(secret, str) else secret, digestmod=hashlib.sha256)
    mac.update(hashlib.sha256(data).digest())  # fixed length: the file cannot run into what follows
    mac.update(json.dumps([list(warnings), [report.rows, report.changed_rows, report.price_changes,
                                            report.retired, report.restored]]).encode())
    return mac.hexdigest()


def _accepted(accept: str | None, key: str) -> bool:
    return accept is not None and hmac.compare_digest(accept.encode(), key.encode())


@dataclass
class _Row:
    line: int
    package: Package
    price: int
    active: bool
    unversioned: bool  # no version to compare with: applied as it is


def _clause(text: str) -> str:
    """A field message as part of a row's list of problems: "A price ..." -> "a price ..."."""
    return (text[:1].lower() + text[1:]).rstrip(".")


def _check_row(row: csv_files.CsvRow, packages: Mapping[tuple[str, str, int], Package]
               ) -> tuple[Package | None, int, bool, int | None, list[str]]:
    if row.problem:
        return None, 0, False, None, [_clause(row.problem)]
    values = row.cells
    problems = [f"{name} is empty" for name in LAYOUT.columns
                if not values[name] and name not in LAYOUT.optional]
    version = None
    if values["version"]:
        version = parse_int(values["version"], minimum=1)
        if version is None:
            problems.append(f"version {values['version']!r}: not a version the export writes (leave it "
                            "as exported)")
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
    return package, price, active, version, problems


def _changed_since(package: Package, price: int, active: bool, version: int | None) -> str:
    """Why a row may not be applied: its package changed after the file was exported and the row does
    not say what the package is now ('' when it may)."""
    if version is None or version == package.version or (price, active) == (package.price_cents,
                                                                               package.active):
        return ""
    now = []
    if price != package.price_cents:
        now.append(f"costs {money.format_cents(package.price_cents, package.currency)}")
    if active != package.active:
        now.append("is on sale again" if package.active else "is retired")
    return (f"the package was changed after the file was exported (version {version}, now "
            f"{package.version}) and now {' and '.join(now)}: export the prices again and make this "
            "change there")


def _checked_rows(rows: list[csv_files.CsvRow], all_packages: Sequence[Package]) -> list[_Row]:
    """The file's rows as changes to packages. :raise ImportRefused: listing every bad row."""
    by_key = {(p.strength.product.slug, p.strength.slug, p.units): p for p in all_packages}
    problems: list[RowProblem] = []
    seen: dict[int, int] = {}  # package id -> line
    good: list[_Row] = []
    for row in rows:
        package, price, active, version, reasons = _check_row(row, by_key)
        if package is not None and package.id in seen:
            reasons.append(f"the same package as line {seen[package.id]}")
        if package is not None and not reasons:
            reasons = [reason for reason in [_changed_since(package, price, active, version)] if reason]
        if reasons:
            problems.append(RowProblem(row.line, "; ".join(reasons)))
            continue
        assert package is not None
        seen[package.id] = row.line
        good.append(_Row(row.line, package, price, active, version is None))
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


def _warnings(good: Sequence[_Row], all_packages: Sequence[Package]) -> list[str]:
    """The price editor's per-pill warnings for each strength the file changes, as its packages on sale
    would be after the import."""
    after = {p.id: (p.price_cents, p.active) for p in all_packages}
    touched: set[int] = set()
    for row in good:
        if (row.price, row.active) != after[row.package.id]:
            after[row.package.id] = (row.price, row.active)
            touched.add(row.package.strength_id)
    by_strength: dict[int, list[Package]] = {}
    for package in all_packages:
        if package.strength_id in touched:
            by_strength.setdefault(package.strength_id, []).append(package)
    warnings = []
    in_list_order = sorted(by_strength.values(), key=lambda ps: (
        ps[0].strength.product.slug, ps[0].strength.position, ps[0].strength_id))  # as the export lists them
    for packages in in_list_order:
        strength = packages[0].strength
        pairs = sorted((p.units, after[p.id][0]) for p in packages if after[p.id][1])
        name = f"{strength.product.name} {strength.label}"
        warnings += [f"{name}: {warning}" for warning in
                     per_pill_warnings(money.price_table(pairs), packages[0].currency)]
    return warnings


def _report(good: Sequence[_Row], warnings: list[str]) -> ImportReport:
    changed_rows = prices_changed = retired = restored = 0
    for row in good:
        price_changed, active_changed = row.price != row.package.price_cents, row.active != row.package.active
        changed_rows += price_changed or active_changed
        prices_changed += price_changed
        retired += active_changed and not row.active
        restored += active_changed and row.active
    return ImportReport(len(good), changed_rows, prices_changed, retired, restored, warnings,
                        sum(row.unversioned for row in good))


def import_csv(data: bytes, actor: User, *, filename: str = "", accept: str | None = None,
               now: dt.datetime | None = None) -> ImportReport:
    """Apply a price file: every row is checked first, and if any is wrong nothing is applied.

    Rows name existing packages by (product_slug, strength_slug, units) and may change their price
    and whether they are on sale. A good file is applied in one transaction, with a history row and
    an audit row per change. A file that gives per-pill warnings is applied only when `accept` is its
    confirmation_key with the warnings and report it gives now (what the admin saw and accepted).

    :raise ImportRefused: with the reason, and each bad row with its line number.
    :raise ImportNeedsConfirmation: the file gives warnings not accepted; nothing is applied.
    """
    now = now or utcnow()
    # The name is the browser's: kept printable and within the audit row's object id (64 characters).
    filename = "".join(ch for ch in filename if ch.isprintable())[:64]
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
        warnings = _warnings(good, all_packages)
        report = _report(good, warnings)
        if warnings:
            key = confirmation_key(data, warnings, report)
            if not _accepted(accept, key):
                raise ImportNeedsConfirmation(warnings, report, key)
        reason = f"CSV import {filename}".strip()[:REASON_MAX]
        for row in good:
            package = row.package
            old_price, old_active = package.price_cents, package.active
            if row.price == old_price and row.active == old_active:
                continue
            package.version += 1
            if row.price != old_price:
                package.price_cents = row.price
                record_change(package, "price", old_price, row.price, actor, reason, now)
                audit.record("price.changed", object_type="package", object_id=package.id, actor=actor,
                             strength_id=package.strength_id, units=package.units, old_price_cents=old_price,
                             new_price_cents=row.price, reason=reason, line=row.line)
            if row.active != old_active:
                package.active = row.active
                kind = "restored" if row.active else "retired"
                record_change(package, kind, row.price, row.price, actor, reason, now)
                audit.record(f"package.{kind}", object_type="package", object_id=package.id, actor=actor,
                             strength_id=package.strength_id, units=package.units, reason=reason,
                             line=row.line)
        audit.record("prices.imported", object_type="price_file", object_id=filename or None, actor=actor,
                     rows=report.rows, price_changes=report.price_changes, retired=report.retired,
                     restored=report.restored, **({"warnings_accepted": warnings} if warnings else {}))
        db.session.commit()
    return report
