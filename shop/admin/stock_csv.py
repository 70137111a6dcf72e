"""The stock as CSV: one row per lot, columns LAYOUT.columns (supplier_reference may be left out).

Importing checks every row first and applies nothing if any row is wrong; a good file is applied in one
transaction: a lot not yet recorded is received (with units_remaining as its units), and a recorded lot
whose units_remaining differs gets a count-correction adjustment to the new count. Expiry dates of
recorded lots cannot be changed by import; their supplier reference is ignored.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from shop import audit
from shop.accounts.models import User
from shop.admin import csv_files
from shop.admin.common import Refused
from shop.admin.stock import MAX_ON_HAND, apply_adjustment, lot_number_error, new_lot_errors
from shop.catalog.models import Product, Strength
from shop.database import begin_write
from shop.extensions import db
from shop.inventory import services as inventory
from shop.inventory.models import StockLot
from shop.numbers import parse_int

LAYOUT = csv_files.CsvLayout(
    columns=("product_slug", "strength_slug", "lot_number", "expiry_date", "units_remaining",
             "supplier_reference"),
    optional=("supplier_reference",), max_bytes=2 * 1024 * 1024, max_rows=10_000)


def export_csv(day: dt.date | None = None) -> str:
    """Every lot with units left or not yet expired, as the import reads them."""
    day = day or inventory.today()
    rows = db.session.execute(
        sa.select(Product.slug, Strength.slug, StockLot.lot_number, StockLot.expiry_date,
                  StockLot.units_remaining, StockLot.supplier_reference)
        .join(Strength, Strength.id == StockLot.strength_id).join(Product, Product.id == Strength.product_id)
        .where(sa.or_(StockLot.units_remaining > 0, StockLot.expiry_date >= day))
        .order_by(Product.slug, Strength.position, Strength.id, StockLot.expiry_date, StockLot.id))
    return csv_files.csv_text(LAYOUT.columns, (
        (product, strength, lot, expiry.isoformat(), units, supplier or "")
        for product, strength, lot, expiry, units, supplier in rows))


@dataclass(frozen=True)
class RowError:
    line: int | None  # the file's line number; None for the file as a whole
    message: str


@dataclass
class ImportResult:
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0
    received: int = 0
    adjusted: int = 0
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Row:
    line: int
    product_slug: str
    strength_slug: str
    lot_number: str
    expiry_text: str
    units_text: str
    supplier_reference: str
    strength_id: int | None = None
    expiry_date: dt.date | None = None
    units: int | None = None
    lot: StockLot | None = None


def _read_rows(data: bytes, result: ImportResult) -> list[_Row]:
    try:
        rows = csv_files.read_csv(data, LAYOUT)
    except csv_files.CsvRefused as refused:
        result.errors.append(RowError(refused.line, refused.message))
        return []
    result.errors += [RowError(row.line, row.problem) for row in rows if row.problem]
    return [_Row(row.line, row.cells["product_slug"], row.cells["strength_slug"], row.cells["lot_number"],
                 row.cells["expiry_date"], row.cells["units_remaining"], row.cells["supplier_reference"])
            for row in rows if not row.problem]


def _parse_cells(row: _Row) -> list[str]:
    problems = []
    try:
        row.expiry_date = dt.date.fromisoformat(row.expiry_text)
    except ValueError:
        problems.append(f"expiry_date {row.expiry_text!r} is not a date written YYYY-MM-DD.")
    row.units = parse_int(row.units_text, minimum=0)
    if row.units is None:
        problems.append(f"units_remaining {row.units_text!r} is not a whole number of 0 or more.")
    if message := lot_number_error(row.lot_number):
        problems.append(f"lot_number: {message}")
    return problems


def _row_problems(row: _Row, day: dt.date) -> list[str]:
    """The rules for one row against the database (its strength and lot already looked up)."""
    assert row.units is not None and row.expiry_date is not None
    lot = row.lot
    if lot is None:
        errors = new_lot_errors(row.lot_number, row.expiry_date, row.units, row.supplier_reference, day)
        names = {"lot_number": "lot_number", "expiry_date": "expiry_date", "units": "units_remaining",
                 "supplier_reference": "supplier_reference"}
        return [f"New lot {row.lot_number}: {names[key]}: {message}" for key, message in errors.items()]
    if row.expiry_date != lot.expiry_date:
        return [f"Lot {lot.lot_number} expires on {lot.expiry_date.isoformat()}, not "
                f"{row.expiry_date.isoformat()}; an import cannot change an expiry date."]
    if row.units > lot.units_received:
        return [f"Lot {lot.lot_number} was received with {lot.units_received:,} units and cannot hold "
                f"{row.units:,}; receive the extra units as a new lot."]
    if row.units > lot.units_remaining and lot.expiry_date < day:
        return [f"Lot {lot.lot_number} has expired: its units cannot be added back to stock."]
    return []


def import_csv(data: bytes, actor: User) -> ImportResult:
    """Check every row, then apply them all in one transaction, or nothing if any row is wrong."""
    result = ImportResult()
    rows = _read_rows(data, result)
    if result.errors:
        return result
    result.rows = len(rows)
    begin_write()
    day = inventory.today()
    ids = {(p, s): sid for sid, p, s in db.session.execute(
        sa.select(Strength.id, Product.slug, Strength.slug).join(Product, Product.id == Strength.product_id))}
    keys = {(r.product_slug, r.strength_slug) for r in rows}
    wanted = {sid for key, sid in ids.items() if key in keys}
    inventory.lock_strengths(wanted)  # then read the counters and lots they guard
    counters = {sid: (on_hand, allocated) for sid, on_hand, allocated in db.session.execute(
        sa.select(Strength.id, Strength.stock_on_hand, Strength.stock_allocated)
        .where(Strength.id.in_(wanted)))}
    strengths = {key: (sid, *counters[sid]) for key, sid in ids.items() if sid in counters}
    lots = {(lot.strength_id, lot.lot_number.lower()): lot for lot in db.session.scalars(
        sa.select(StockLot).where(StockLot.strength_id.in_(wanted))
        .order_by(StockLot.strength_id, StockLot.id)
        .with_for_update().execution_options(populate_existing=True))}

    seen: dict[tuple[int, str], int] = {}
    change: dict[int, int] = {}  # strength id -> change of on-hand
    lines_of: dict[int, list[int]] = {}
    for row in rows:
        problems = _parse_cells(row)
        found = strengths.get((row.product_slug, row.strength_slug))
        if found is None:
            problems.insert(0, f"No strength {row.strength_slug!r} of product {row.product_slug!r} in the "
                               "catalog.")
        if found is not None and not problems:
            row.strength_id = found[0]
            key = (row.strength_id, row.lot_number.lower())
            if key in seen:
                problems.append(f"Lot {row.lot_number} is listed twice (first on line {seen[key]}).")
            else:
                seen[key] = row.line
                row.lot = lots.get(key)
                problems += _row_problems(row, day)
        if problems:
            result.errors += [RowError(row.line, message) for message in problems]
            continue
        assert row.strength_id is not None and row.units is not None
        delta = row.units - (row.lot.units_remaining if row.lot else 0)
        change[row.strength_id] = change.get(row.strength_id, 0) + delta
        lines_of.setdefault(row.strength_id, []).append(row.line)
    for (product_slug, strength_slug), (sid, on_hand, allocated) in strengths.items():
        if sid not in change:
            continue
        after = on_hand + change[sid]
        where = ", ".join(str(n) for n in lines_of[sid])
        if after < allocated:
            result.errors.append(RowError(lines_of[sid][0], (
                f"{product_slug} {strength_slug}: on hand would fall to {after:,}, below the {allocated:,} "
                f"units allocated to orders (lines {where}).")))
        elif after > MAX_ON_HAND:
            result.errors.append(RowError(lines_of[sid][0], (
                f"{product_slug} {strength_slug}: on hand cannot exceed {MAX_ON_HAND:,} units "
                f"(lines {where}).")))
    if result.errors:
        db.session.rollback()
        result.errors.sort(key=lambda e: e.line or 0)
        return result
    _apply_import(rows, actor, day, result)
    return result


def _apply_import(rows: list[_Row], actor: User, day: dt.date, result: ImportResult) -> None:
    touched = set()
    for row in rows:
        assert row.strength_id is not None and row.units is not None and row.expiry_date is not None
        if row.lot is None:
            strength = db.session.get(Strength, row.strength_id)
            assert strength is not None
            inventory.add_lot(strength, lot_number=row.lot_number, expiry_date=row.expiry_date,
                              units=row.units, supplier_reference=row.supplier_reference, actor_id=actor.id)
            audit.record("stock.received", object_type="strength", object_id=row.strength_id, actor=actor,
                         lot=row.lot_number, expiry_date=row.expiry_date.isoformat(), units=row.units,
                         supplier_reference=row.supplier_reference, source="csv")
            result.received += 1
        elif row.units != row.lot.units_remaining:
            note = f"CSV import: counted {row.units:,} (was {row.lot.units_remaining:,})"
            try:
                apply_adjustment(row.strength_id, row.lot, row.units - row.lot.units_remaining,
                                 "count_correction", note, actor, source="csv")
            except Refused as error:  # rolled back: only a change made meanwhile gets here
                result.errors.append(RowError(row.line, str(error)))
                result.received = result.adjusted = result.unchanged = 0
                return
            result.adjusted += 1
        else:
            result.unchanged += 1
            continue
        touched.add(row.strength_id)
    for strength_id in sorted(touched):
        inventory.settle_expired(strength_id, day, actor.id)
    audit.record("stock.imported", object_type="stock", actor=actor, rows=result.rows,
                 received=result.received, adjusted=result.adjusted, unchanged=result.unchanged)
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        result.errors.append(RowError(None, "A lot in the file was recorded meanwhile; nothing was applied. "
                                            "Export the stock again and retry."))
        result.received = result.adjusted = result.unchanged = 0
