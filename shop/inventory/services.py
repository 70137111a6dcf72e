"""Stock arithmetic: receipts, allocation, release, dispensing, adjustments and expiry write-offs.

Counters. `Strength.stock_on_hand` is the units on the shelf: always the sum of its lots'
`units_remaining`. `Strength.stock_allocated` is the units promised to unpaid or undispensed orders.
Every change of on-hand is a ledger line (StockMovement of a kind in ON_HAND_KINDS), so the sum of
those lines for a strength equals its on-hand.

Expired lots are never sold, by two rules working together:

1. Allocation counts only unexpired lots. Its conditional UPDATE also requires
   (units_remaining of the strength's lots with expiry_date >= today, a scalar subquery)
   - stock_allocated >= the units wanted, so a lot that expired at midnight cannot be sold even
   before the write-off job has run. Dispensing takes units only from unexpired lots, earliest
   expiry first.
2. `write_off_expired()` (run by the worker every round) moves the remaining units of lots past
   their expiry date out of on-hand with an "expiry" ledger line. The CHECK
   stock_allocated <= stock_on_hand means on-hand can never fall below what orders were promised.
   So when allocated units depend on a lot that just expired (unexpired stock < allocated), only
   on_hand - allocated units are written off; the rest stay in the expired lot, "held": they
   still count in on-hand but are never allocated or dispensed, and the admin stock page shows the
   shortfall. The next receipt (or a cancelled order, at the next run) makes room and the held
   units are written off then: `settle_expired()` runs after every admin stock change. Until the
   shortfall is covered, the orders that depend on it cannot be dispensed (dispense raises
   OutOfStock) and need new stock or cancelling.

After a write-off, on_hand - allocated is exactly the sellable availability (either every expired
unit is gone, or on_hand == allocated and nothing is available), so the product page and the cart,
which read Strength.stock_available, are right as soon as the job has run; between midnight and
the next run they may show expired units, and placing the order refuses them (rule 1).
`available_units()` gives the exact figure at any moment.

Locks. Every writer takes the strength rows first, in id order, and only then its lots
(`lock_strengths`), so allocation, dispensing, adjustments and write-offs cannot deadlock, and a
statement run after the lock sees every committed change to the strength's lots (PostgreSQL READ
COMMITTED). On SQLite `begin_write()` has already serialised writers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from shop import audit
from shop.catalog.models import Strength
from shop.database import begin_write
from shop.extensions import db
from shop.inventory.models import ADJUSTMENT_REASONS, StockLot, StockMovement

# The ledger kinds that change on-hand; allocation and release change only stock_allocated.
ON_HAND_KINDS = ("receipt", "dispense", "adjustment", "expiry")


class OutOfStock(Exception):
    def __init__(self, strength_id: int) -> None:
        super().__init__(f"not enough stock of strength {strength_id}")
        self.strength_id = strength_id


class StockRefused(Exception):
    """A stock change that would break a rule (a lot or on-hand below zero, on-hand below allocated)."""


def today(now: dt.datetime | None = None) -> dt.date:
    """The date that decides expiry. A lot is sellable through its expiry date."""
    return now.date() if now is not None else dt.date.today()


def lock_strengths(strength_ids: Iterable[int]) -> None:
    """Lock strength rows in id order before touching their lots (PostgreSQL; see the module notes)."""
    ids = sorted(set(strength_ids))
    if not ids or db.session.get_bind().dialect.name == "sqlite":
        return
    # FOR NO KEY UPDATE, the lock an UPDATE of the row takes: it does not wait for the key-share
    # locks that inserting order lines (foreign keys to the strength) hold in other checkouts.
    db.session.execute(sa.select(Strength.id).where(Strength.id.in_(ids)).order_by(Strength.id)
                       .with_for_update(key_share=True))


def _sellable_subquery(strength_id: int, day: dt.date) -> sa.ScalarSelect[int]:
    return (sa.select(sa.func.coalesce(sa.func.sum(StockLot.units_remaining), 0))
            .where(StockLot.strength_id == strength_id, StockLot.expiry_date >= day)
            .scalar_subquery())


def sellable_units(strength_ids: Iterable[int], day: dt.date | None = None) -> dict[int, int]:
    """Units in unexpired lots, per strength (0 for a strength without any)."""
    ids = set(strength_ids)
    if not ids:
        return {}
    day = day or today()
    rows = db.session.execute(
        sa.select(StockLot.strength_id, sa.func.sum(StockLot.units_remaining))
        .where(StockLot.strength_id.in_(ids), StockLot.expiry_date >= day)
        .group_by(StockLot.strength_id))
    found = {strength_id: int(units or 0) for strength_id, units in rows}
    return {strength_id: found.get(strength_id, 0) for strength_id in ids}


def available_units(strength: Strength, day: dt.date | None = None) -> int:
    """Units that can be sold now: unexpired units not promised to orders (never negative)."""
    return available_by_strength([strength], day)[strength.id]


def available_by_strength(strengths: Iterable[Strength], day: dt.date | None = None) -> dict[int, int]:
    """available_units of several strengths in one query."""
    strengths = list(strengths)
    sellable = sellable_units([s.id for s in strengths], day)
    return {s.id: max(min(sellable[s.id], s.stock_on_hand) - s.stock_allocated, 0) for s in strengths}


def add_lot(strength: Strength, *, lot_number: str, expiry_date: dt.date, units: int,
            supplier_reference: str = "", actor_id: int | None = None) -> StockLot:
    """Receive units into a strength (the caller validates and commits)."""
    lot = StockLot(strength_id=strength.id, lot_number=lot_number, expiry_date=expiry_date,
                   units_received=units, units_remaining=units, supplier_reference=supplier_reference)
    db.session.add(lot)
    db.session.flush()
    db.session.execute(sa.update(Strength).where(Strength.id == strength.id)
                       .values(stock_on_hand=Strength.stock_on_hand + units)
                       .execution_options(synchronize_session=False))
    db.session.add(StockMovement(strength_id=strength.id, lot_id=lot.id, kind="receipt", units=units,
                                 actor_id=actor_id, reason=supplier_reference))
    return lot


def adjust_lot(lot_id: int, strength_id: int, units: int, *, reason_code: str, note: str,
               actor_id: int | None) -> StockMovement:
    """Add (or, negative, remove) units of one lot (the caller validates, locks and commits).

    The UPDATEs are conditional, so whatever the caller checked, a lot never goes below 0 or above
    what was received, and on-hand never below allocated. :raise StockRefused: nothing changed
    that the caller does not roll back.
    """
    if reason_code not in ADJUSTMENT_REASONS:
        raise StockRefused(f"unknown adjustment reason {reason_code!r}")
    remaining = StockLot.units_remaining + units
    done = db.session.execute(
        sa.update(StockLot)
        .where(StockLot.id == lot_id, StockLot.strength_id == strength_id, remaining >= 0,
               remaining <= StockLot.units_received)
        .values(units_remaining=remaining).execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise StockRefused("the lot cannot go below 0 or above the units received")
    done = db.session.execute(
        sa.update(Strength)
        .where(Strength.id == strength_id, Strength.stock_on_hand + units >= Strength.stock_allocated)
        .values(stock_on_hand=Strength.stock_on_hand + units)
        .execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise StockRefused("on hand cannot go below the units allocated to orders")
    movement = StockMovement(strength_id=strength_id, lot_id=lot_id, kind="adjustment", units=units,
                             actor_id=actor_id, reason_code=reason_code, reason=note)
    db.session.add(movement)
    return movement


def allocate(units_by_strength: dict[int, int], order_id: int) -> None:
    """Promise units of unexpired lots to an order (the caller's transaction).

    :raise OutOfStock: the caller rolls the whole order back, so nothing allocated is kept.
    """
    day = today()
    lock_strengths(units_by_strength)
    for strength_id in sorted(units_by_strength):
        units = units_by_strength[strength_id]
        done = db.session.execute(
            sa.update(Strength)
            .where(Strength.id == strength_id, Strength.active,
                   Strength.stock_on_hand - Strength.stock_allocated >= units,
                   _sellable_subquery(strength_id, day) - Strength.stock_allocated >= units)
            .values(stock_allocated=Strength.stock_allocated + units)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            raise OutOfStock(strength_id)
        db.session.add(StockMovement(strength_id=strength_id, kind="allocation", units=-units,
                                     order_id=order_id))


def release(units_by_strength: dict[int, int], order_id: int, reason: str) -> None:
    """Give allocated units back (order cancelled or never paid). Units held in an expired lot
    for this order are written off at the next `write_off_expired()` run."""
    for strength_id in sorted(units_by_strength):
        units = units_by_strength[strength_id]
        db.session.execute(
            sa.update(Strength).where(Strength.id == strength_id)
            .values(stock_allocated=Strength.stock_allocated - units)
            .execution_options(synchronize_session=False))
        db.session.add(StockMovement(strength_id=strength_id, kind="release", units=units,
                                     order_id=order_id, reason=reason))


def dispense(strength_id: int, units: int, order_id: int, actor_id: int | None) -> list[tuple[StockLot, int]]:
    """Take allocated units off the shelf, from the earliest-expiring unexpired lots first.

    :raise OutOfStock: the unexpired lots hold fewer units than the order needs (an allocated lot
    expired meanwhile); the caller rolls back.
    """
    day = today()
    lock_strengths([strength_id])
    lots = db.session.scalars(
        sa.select(StockLot)
        .where(StockLot.strength_id == strength_id, StockLot.units_remaining > 0,
               StockLot.expiry_date >= day)
        .order_by(StockLot.expiry_date, StockLot.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    taken: list[tuple[StockLot, int]] = []
    needed = units
    for lot in lots:
        if needed == 0:
            break
        take = min(needed, lot.units_remaining)
        lot.units_remaining -= take
        needed -= take
        taken.append((lot, take))
        db.session.add(StockMovement(strength_id=strength_id, lot_id=lot.id, kind="dispense",
                                     units=-take, order_id=order_id, actor_id=actor_id))
    if needed:
        raise OutOfStock(strength_id)
    db.session.execute(
        sa.update(Strength).where(Strength.id == strength_id)
        .values(stock_on_hand=Strength.stock_on_hand - units,
                stock_allocated=Strength.stock_allocated - units)
        .execution_options(synchronize_session=False))
    return taken


# Expiry ----------------------------------------------------------------------------------------


def settle_expired(strength_id: int, day: dt.date, actor_id: int | None = None) -> int:
    """Write off the expired units of one strength that on-hand can spare (the caller's write
    transaction). Returns the units written off; those allocated orders depend on stay held."""
    lock_strengths([strength_id])
    on_hand, allocated = db.session.execute(
        sa.select(Strength.stock_on_hand, Strength.stock_allocated).where(Strength.id == strength_id)).one()
    room = on_hand - allocated
    if room <= 0:
        return 0
    lots = db.session.scalars(
        sa.select(StockLot)
        .where(StockLot.strength_id == strength_id, StockLot.expiry_date < day, StockLot.units_remaining > 0)
        .order_by(StockLot.expiry_date, StockLot.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    written, held, details = 0, 0, []
    for lot in lots:
        take = min(lot.units_remaining, room - written)
        held += lot.units_remaining - take
        if take <= 0:
            continue
        lot.units_remaining -= take
        written += take
        details.append(f"{lot.lot_number}: {take}")
        db.session.add(StockMovement(strength_id=strength_id, lot_id=lot.id, kind="expiry", units=-take,
                                     actor_id=actor_id, reason=f"Expired on {lot.expiry_date.isoformat()}"))
    if written:
        db.session.flush()
        db.session.execute(sa.update(Strength).where(Strength.id == strength_id)
                           .values(stock_on_hand=Strength.stock_on_hand - written)
                           .execution_options(synchronize_session=False))
        audit.record("stock.expired_written_off", object_type="strength", object_id=strength_id,
                     units=written, lots=", ".join(details), held_for_orders=held)
    return written


def write_off_expired(now: dt.datetime | None = None) -> int:
    """Move the units of lots past their expiry date out of on-hand, each with an "expiry" ledger
    line and an audit row, in one transaction. Returns the units written off. Units that allocated
    orders depend on are held (see the module notes) and retried at every run.
    Run by the worker every round and by `flask shop write-off-expired`."""
    day = today(now)
    due = (sa.select(StockLot.strength_id).join(Strength, Strength.id == StockLot.strength_id)
           .where(StockLot.expiry_date < day, StockLot.units_remaining > 0,
                  Strength.stock_on_hand > Strength.stock_allocated)
           .distinct())
    # A cheap read first: the worker calls this every few seconds and should not take SQLite's
    # write lock when there is nothing to do. The real reads follow begin_write().
    if db.session.execute(due.limit(1)).first() is None:
        db.session.rollback()
        return 0
    begin_write()
    total = 0
    try:
        for strength_id in sorted(db.session.scalars(due)):
            total += settle_expired(strength_id, day)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return total
