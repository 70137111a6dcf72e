"""Stock arithmetic. Strength.stock_on_hand counts sellable units (in unexpired lots) and
Strength.stock_allocated those promised to orders; available = on hand - allocated.

Allocation is one conditional UPDATE per strength, taken in strength-id order inside the order's
transaction: it succeeds only while enough is available, so stock can never go negative or be sold
twice, and concurrent orders cannot deadlock each other.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from shop.catalog.models import Strength
from shop.extensions import db
from shop.inventory.models import StockLot, StockMovement


class OutOfStock(Exception):
    def __init__(self, strength_id: int) -> None:
        super().__init__(f"not enough stock of strength {strength_id}")
        self.strength_id = strength_id


def add_lot(strength: Strength, *, lot_number: str, expiry_date: dt.date, units: int,
            supplier_reference: str = "", actor_id: int | None = None) -> StockLot:
    """Receive units into a strength (the caller commits)."""
    lot = StockLot(strength_id=strength.id, lot_number=lot_number, expiry_date=expiry_date,
                   units_received=units, units_remaining=units, supplier_reference=supplier_reference)
    db.session.add(lot)
    db.session.flush()
    db.session.execute(sa.update(Strength).where(Strength.id == strength.id)
                       .values(stock_on_hand=Strength.stock_on_hand + units))
    db.session.add(StockMovement(strength_id=strength.id, lot_id=lot.id, kind="receipt", units=units,
                                 actor_id=actor_id, reason=supplier_reference))
    return lot


def allocate(units_by_strength: dict[int, int], order_id: int) -> None:
    """Promise units to an order (the caller's transaction). :raise OutOfStock: nothing allocated
    is kept, because the caller rolls the whole order back."""
    for strength_id in sorted(units_by_strength):
        units = units_by_strength[strength_id]
        done = db.session.execute(
            sa.update(Strength)
            .where(Strength.id == strength_id, Strength.active,
                   Strength.stock_on_hand - Strength.stock_allocated >= units)
            .values(stock_allocated=Strength.stock_allocated + units)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            raise OutOfStock(strength_id)
        db.session.add(StockMovement(strength_id=strength_id, kind="allocation", units=-units,
                                     order_id=order_id))


def release(units_by_strength: dict[int, int], order_id: int, reason: str) -> None:
    """Give allocated units back (order cancelled or never paid)."""
    for strength_id in sorted(units_by_strength):
        units = units_by_strength[strength_id]
        db.session.execute(
            sa.update(Strength).where(Strength.id == strength_id)
            .values(stock_allocated=Strength.stock_allocated - units)
            .execution_options(synchronize_session=False))
        db.session.add(StockMovement(strength_id=strength_id, kind="release", units=units,
                                     order_id=order_id, reason=reason))


def dispense(strength_id: int, units: int, order_id: int, actor_id: int | None) -> list[tuple[StockLot, int]]:
    """Take allocated units off the shelf, from the earliest-expiring unexpired lots first."""
    today = dt.date.today()
    lots = db.session.scalars(
        sa.select(StockLot)
        .where(StockLot.strength_id == strength_id, StockLot.units_remaining > 0,
               StockLot.expiry_date >= today)
        .order_by(StockLot.expiry_date, StockLot.id)
        .with_for_update()
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
