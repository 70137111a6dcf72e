"""Admin stock management: receive lots, adjust them, thresholds, the ledger, low stock and expiring
lots (the stock CSV is in stock_csv).

Each change runs in one transaction (begin_write first), writes its ledger lines with the admin as
actor and an audit row, and changes nothing when refused (common.Refused carries {field: message}).
The stock arithmetic itself (lots, counters, expiry) lives in shop.inventory.services.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import contains_eager, joinedload

from shop import audit
from shop.accounts.models import User
from shop.admin.common import Refused, refuse
from shop.catalog.models import Package, Product, Strength
from shop.database import begin_write
from shop.dates import range_end, range_start
from shop.extensions import db
from shop.inventory import services as inventory
from shop.inventory.models import ADJUSTMENT_REASONS, MOVEMENT_KINDS, StockLot, StockMovement
from shop.orders.models import Order

MAX_UNITS = 1_000_000  # per receipt, per adjustment, per threshold
MAX_ON_HAND = 1_000_000_000  # keeps the counters far inside a 32-bit integer
MAX_EXPIRY_YEARS = 10  # a later expiry is a typing mistake
EXPIRING_DAYS = 90
LEDGER_PAGE = 50
RECENT_MOVEMENTS = 15
# Lot numbers as printed by makers: letters, digits and . _ / - or spaces, starting with a letter or
# digit (so a CSV cell never starts like a spreadsheet formula).
LOT_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]*")
LOT_NUMBER_MAX = 60
SUPPLIER_REFERENCE_MAX = 120
NOTE_MAX = 200
# Units can only leave stock for these reasons; count corrections and returns go either way.
OUTGOING_REASONS = ("damaged", "expired")


# Reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrengthStock:
    """One strength's counters. `sellable` counts units in unexpired lots only."""

    strength: Strength
    sellable: int
    threshold: int
    threshold_is_default: bool

    @property
    def on_hand(self) -> int:
        return self.strength.stock_on_hand

    @property
    def allocated(self) -> int:
        return self.strength.stock_allocated

    @property
    def available(self) -> int:
        return max(min(self.sellable, self.on_hand) - self.allocated, 0)

    @property
    def expired(self) -> int:
        """Units of expired lots still counted on hand (not yet written off, or held for orders)."""
        return max(self.on_hand - self.sellable, 0)

    @property
    def shortfall(self) -> int:
        """Allocated units that unexpired stock does not cover: those orders cannot be dispensed."""
        return max(self.allocated - self.sellable, 0)

    @property
    def low(self) -> bool:
        return self.available <= self.threshold


@dataclass(frozen=True)
class LotStock:
    """One lot. Allocations belong to the strength; they are shown against the lots that will
    serve them (earliest expiry first, as dispensing takes them)."""

    lot: StockLot
    expired: bool
    allocated: int
    days_left: int

    @property
    def available(self) -> int:
        return 0 if self.expired else self.lot.units_remaining - self.allocated


@dataclass(frozen=True)
class StrengthDetail:
    stock: StrengthStock
    lots: list[LotStock]
    recent: list[LedgerLine]
    ledger_balance: int


def _default_threshold(smallest_pack: int | None) -> int:
    return current_app.config["LOW_STOCK_PACKS"] * (smallest_pack or 0)


def _smallest_packs(strength_ids: Sequence[int] | None = None) -> dict[int, int]:
    stmt = sa.select(Package.strength_id, sa.func.min(Package.units)).where(Package.active)
    if strength_ids is not None:
        stmt = stmt.where(Package.strength_id.in_(strength_ids))
    rows = db.session.execute(stmt.group_by(Package.strength_id))
    return {strength_id: units for strength_id, units in rows}


def _stock_rows(strengths: Sequence[Strength], day: dt.date) -> list[StrengthStock]:
    ids = [s.id for s in strengths]
    sellable = inventory.sellable_units(ids, day)
    smallest = _smallest_packs(ids)
    rows = []
    for s in strengths:
        default = s.low_stock_units is None
        threshold = _default_threshold(smallest.get(s.id)) if default else s.low_stock_units
        rows.append(StrengthStock(s, sellable[s.id], threshold or 0, default))
    return rows


def overview(day: dt.date | None = None) -> list[StrengthStock]:
    """Every strength, by product name and the product's order of strengths."""
    strengths = db.session.scalars(
        sa.select(Strength).join(Strength.product).options(contains_eager(Strength.product))
        .order_by(Product.name, Product.id, Strength.position, Strength.id)).all()
    return _stock_rows(strengths, day or inventory.today())


def low_stock(day: dt.date | None = None) -> list[StrengthStock]:
    """Strengths on sale whose available units are at or below their threshold, emptiest first."""
    rows = [row for row in overview(day) if row.low and row.strength.active and row.strength.product.active]
    return sorted(rows, key=lambda row: (row.available - row.threshold, row.strength.id))


def get_strength(strength_id: int) -> Strength | None:
    return db.session.scalars(sa.select(Strength).where(Strength.id == strength_id)
                              .options(joinedload(Strength.product))).first()


def strength_detail(strength: Strength, day: dt.date | None = None) -> StrengthDetail:
    day = day or inventory.today()
    stock = _stock_rows([strength], day)[0]
    lots = db.session.scalars(sa.select(StockLot).where(StockLot.strength_id == strength.id)
                              .order_by(StockLot.expiry_date, StockLot.id)).all()
    to_cover = strength.stock_allocated
    rows = []
    for lot in lots:
        expired = lot.expiry_date < day
        allocated = 0 if expired else min(lot.units_remaining, to_cover)
        to_cover -= allocated
        rows.append(LotStock(lot, expired, allocated, (lot.expiry_date - day).days))
    recent = ledger(LedgerFilter(strength_id=strength.id), limit=RECENT_MOVEMENTS).items
    return StrengthDetail(stock, rows, recent, ledger_balance(strength.id))


def ledger_balance(strength_id: int) -> int:
    """The sum of the ledger lines that change on-hand; it equals the strength's on-hand."""
    return db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(StockMovement.units), 0))
        .where(StockMovement.strength_id == strength_id, StockMovement.kind.in_(inventory.ON_HAND_KINDS)))


@dataclass(frozen=True)
class LedgerFilter:
    strength_id: int | None = None
    lot_id: int | None = None
    kind: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


@dataclass(frozen=True)
class LedgerLine:
    movement: StockMovement
    product_name: str
    strength_label: str
    order_number: str | None


@dataclass(frozen=True)
class LedgerPage:
    items: list[LedgerLine]
    next_before: int | None


def ledger(filters: LedgerFilter, before: int | None = None, limit: int = LEDGER_PAGE) -> LedgerPage:
    """Stock movements, newest first, with keyset pagination on the id (`before`)."""
    stmt = (sa.select(StockMovement, Product.name, Strength.label, Order.number)
            .join(Strength, Strength.id == StockMovement.strength_id)
            .join(Product, Product.id == Strength.product_id)
            .outerjoin(Order, Order.id == StockMovement.order_id)
            .options(joinedload(StockMovement.actor), joinedload(StockMovement.lot))
            .order_by(StockMovement.id.desc()).limit(limit + 1))
    if filters.strength_id:
        stmt = stmt.where(StockMovement.strength_id == filters.strength_id)
    if filters.lot_id:
        stmt = stmt.where(StockMovement.lot_id == filters.lot_id)
    if filters.kind in MOVEMENT_KINDS:
        stmt = stmt.where(StockMovement.kind == filters.kind)
    if (start := range_start(filters.date_from)) is not None:
        stmt = stmt.where(StockMovement.at >= start)
    if (end := range_end(filters.date_to)) is not None:
        stmt = stmt.where(StockMovement.at < end)
    if before:
        stmt = stmt.where(StockMovement.id < before)
    rows = [LedgerLine(*row) for row in db.session.execute(stmt).unique()]
    more = len(rows) > limit
    rows = rows[:limit]
    return LedgerPage(rows, rows[-1].movement.id if more and rows else None)


def expiring(days: int = EXPIRING_DAYS, day: dt.date | None = None) -> list[LotStock]:
    """Lots with units left that expire within `days` (or have expired), soonest first."""
    day = day or inventory.today()
    lots = db.session.scalars(
        sa.select(StockLot).where(StockLot.units_remaining > 0,
                                  StockLot.expiry_date <= day + dt.timedelta(days=days))
        .options(joinedload(StockLot.strength).joinedload(Strength.product))
        .order_by(StockLot.expiry_date, StockLot.id)).all()
    return [LotStock(lot, lot.expiry_date < day, 0, (lot.expiry_date - day).days) for lot in lots]


# Changing --------------------------------------------------------------------------------------


def lot_number_error(lot_number: str) -> str | None:
    if not lot_number:
        return "Enter the lot number."
    if len(lot_number) > LOT_NUMBER_MAX:
        return f"A lot number has at most {LOT_NUMBER_MAX} characters."
    if not LOT_NUMBER.fullmatch(lot_number):
        return "Use letters, digits, spaces and . _ / - only, starting with a letter or digit."
    return None


def new_lot_errors(lot_number: str, expiry_date: dt.date | None, units: int | None,
                   supplier_reference: str, day: dt.date) -> dict[str, str]:
    """The rules for a new lot, apart from uniqueness; keys are the receive form's fields."""
    errors: dict[str, str] = {}
    if message := lot_number_error(lot_number):
        errors["lot_number"] = message
    if expiry_date is None:
        errors["expiry_date"] = "Enter the expiry date."
    elif expiry_date <= day:
        errors["expiry_date"] = "The expiry date must be in the future: expired stock cannot be received."
    elif expiry_date > day + dt.timedelta(days=366 * MAX_EXPIRY_YEARS):
        errors["expiry_date"] = f"An expiry more than {MAX_EXPIRY_YEARS} years away is not plausible."
    if units is None:
        errors["units"] = "Enter the number of units received."
    elif not 1 <= units <= MAX_UNITS:
        errors["units"] = f"Enter between 1 and {MAX_UNITS:,} units."
    if len(supplier_reference) > SUPPLIER_REFERENCE_MAX:
        errors["supplier_reference"] = f"At most {SUPPLIER_REFERENCE_MAX} characters."
    return errors


def _find_lot(strength_id: int, lot_number: str) -> StockLot | None:
    """Lot numbers are unique per strength regardless of case ("ab12" is lot AB12)."""
    return db.session.scalars(sa.select(StockLot).where(
        StockLot.strength_id == strength_id,
        sa.func.lower(StockLot.lot_number) == lot_number.lower())).first()


def _on_hand_allocated(strength_id: int) -> tuple[int, int]:
    on_hand, allocated = db.session.execute(
        sa.select(Strength.stock_on_hand, Strength.stock_allocated).where(Strength.id == strength_id)).one()
    return on_hand, allocated


def receive(strength: Strength, *, lot_number: str, expiry_date: dt.date | None, units: int | None,
            supplier_reference: str, actor: User) -> StockLot:
    """Receive a new lot into a strength. :raise Refused: per field; nothing saved."""
    lot_number, supplier_reference = lot_number.strip(), supplier_reference.strip()
    begin_write()
    day = inventory.today()
    inventory.lock_strengths([strength.id])
    errors = new_lot_errors(lot_number, expiry_date, units, supplier_reference, day)
    if "lot_number" not in errors and (existing := _find_lot(strength.id, lot_number)) is not None:
        errors["lot_number"] = (f"Lot {existing.lot_number} is already recorded for this strength "
                                f"(received {existing.received_at:%Y-%m-%d}); adjust that lot instead.")
    if units is not None and "units" not in errors \
            and _on_hand_allocated(strength.id)[0] + units > MAX_ON_HAND:
        errors["units"] = f"On hand cannot exceed {MAX_ON_HAND:,} units."
    if errors:
        refuse(errors)
    assert expiry_date is not None and units is not None
    try:
        lot = inventory.add_lot(strength, lot_number=lot_number, expiry_date=expiry_date, units=units,
                                supplier_reference=supplier_reference, actor_id=actor.id)
        audit.record("stock.received", object_type="strength", object_id=strength.id, actor=actor,
                     lot=lot_number, expiry_date=expiry_date.isoformat(), units=units,
                     supplier_reference=supplier_reference)
        inventory.settle_expired(strength.id, day, actor.id)  # the new units make room for held ones
        db.session.commit()
    except sa.exc.IntegrityError:
        # The same lot number saved by a simultaneous receipt.
        refuse({"lot_number": "This lot was recorded meanwhile; adjust that lot instead."})
    return lot


def _adjustment_errors(lot: StockLot, units: int, reason_code: str, on_hand: int, allocated: int,
                       day: dt.date) -> dict[str, str]:
    """Whether `units` (signed) may be added to the lot; keys are the adjust form's fields."""
    if units > 0 and reason_code in OUTGOING_REASONS:
        return {"change": f"{ADJUSTMENT_REASONS[reason_code]} units leave stock: enter a negative number."}
    if units > 0 and lot.expiry_date < day:
        return {"change": f"Lot {lot.lot_number} has expired: its units cannot be added back to stock."}
    if lot.units_remaining + units < 0:
        return {"change": f"Lot {lot.lot_number} holds {lot.units_remaining:,} units; "
                          "it cannot go below zero."}
    if lot.units_remaining + units > lot.units_received:
        return {"change": f"Lot {lot.lot_number} was received with {lot.units_received:,} units and cannot "
                          "hold more; receive the extra units as a new lot."}
    if on_hand + units < allocated:
        return {"change": f"{allocated:,} units are allocated to orders, so on hand ({on_hand:,}) cannot "
                          f"fall to {on_hand + units:,}. Cancel or dispense orders first."}
    return {}


def adjust(strength: Strength, *, lot_id: int | None, units: int | None, reason_code: str, note: str,
           actor: User) -> StockMovement:
    """Add or remove units of one lot, with a reason. :raise Refused: per field; nothing saved."""
    note = note.strip()
    begin_write()
    day = inventory.today()
    inventory.lock_strengths([strength.id])
    errors: dict[str, str] = {}
    lot = db.session.scalars(sa.select(StockLot).where(StockLot.id == (lot_id or 0),
                                                       StockLot.strength_id == strength.id)
                             .with_for_update().execution_options(populate_existing=True)).first()
    if lot is None:
        errors["lot_id"] = "Choose a lot of this strength."
    if reason_code not in ADJUSTMENT_REASONS:
        errors["reason_code"] = "Choose a reason."
    if units is None or units == 0:
        errors["change"] = "Enter the units to add (positive) or remove (negative), not zero."
    elif abs(units) > MAX_UNITS:
        errors["change"] = f"Enter at most {MAX_UNITS:,} units either way."
    if len(note) > NOTE_MAX:
        errors["note"] = f"At most {NOTE_MAX} characters."
    if not errors:
        assert lot is not None and units is not None
        errors = _adjustment_errors(lot, units, reason_code, *_on_hand_allocated(strength.id), day)
    if errors:
        refuse(errors)
    assert lot is not None and units is not None
    movement = apply_adjustment(strength.id, lot, units, reason_code, note, actor, source="form")
    inventory.settle_expired(strength.id, day, actor.id)
    db.session.commit()
    return movement


def apply_adjustment(strength_id: int, lot: StockLot, units: int, reason_code: str, note: str,
                     actor: User, *, source: str) -> StockMovement:
    """Add `units` (signed) to the lot with its ledger line and audit row, in the caller's write
    transaction (the caller commits). :raise Refused: the inventory refuses it; rolled back."""
    before = lot.units_remaining
    try:
        movement = inventory.adjust_lot(lot.id, strength_id, units, reason_code=reason_code, note=note,
                                        actor_id=actor.id)
    except inventory.StockRefused as error:
        refuse({"change": f"{error}; nothing was changed."})
    audit.record("stock.adjusted", object_type="strength", object_id=strength_id, actor=actor,
                 lot=lot.lot_number, units=units, reason_code=reason_code, note=note,
                 lot_units_before=before, lot_units_after=before + units, source=source)
    return movement


def set_threshold(strength: Strength, units: int | None, actor: User) -> None:
    """Set the low-stock threshold in units; None returns to the shop default."""
    if units is not None and not 0 <= units <= MAX_UNITS:
        raise Refused({"low_stock_units": f"Enter between 0 and {MAX_UNITS:,} units, or leave it empty "
                                          "for the default."})
    begin_write()
    before = db.session.scalar(sa.select(Strength.low_stock_units).where(Strength.id == strength.id))
    db.session.execute(sa.update(Strength).where(Strength.id == strength.id).values(low_stock_units=units)
                       .execution_options(synchronize_session=False))
    audit.record("stock.threshold_changed", object_type="strength", object_id=strength.id, actor=actor,
                 before=before, after=units)
    db.session.commit()
