"""The worker's periodic jobs for the admin side: expired lots written off, due prices applied."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Flask

from shop.audit import utcnow
from shop.catalog.models import Package, Strength
from shop.catalog.price_models import PriceChange
from shop.extensions import db
from shop.inventory.models import StockLot, StockMovement
from shop.notifications import worker
from shop.notifications.sender import LogMailer


def thiamine() -> Strength:
    return db.session.scalars(sa.select(Strength).where(Strength.slug == "100-mg")).one()


def test_a_worker_round_writes_off_expired_lots_and_applies_due_prices(app: Flask) -> None:
    with app.app_context():
        strength = thiamine()
        db.session.execute(sa.update(StockLot).where(StockLot.strength_id == strength.id)
                           .values(expiry_date=dt.date.today() - dt.timedelta(days=1)))
        package = strength.packages[0]
        db.session.add(PriceChange(package_id=package.id, kind="price", old_price_cents=package.price_cents,
                                   new_price_cents=777, reason="autumn list",
                                   effective_at=utcnow() - dt.timedelta(minutes=1)))
        db.session.commit()
        package_id, strength_id = package.id, strength.id

    worker.run_round(app, LogMailer())

    with app.app_context():
        assert db.session.get(Strength, strength_id).stock_on_hand == 0
        written_off = db.session.scalars(sa.select(StockMovement).where(
            StockMovement.strength_id == strength_id, StockMovement.kind == "expiry")).all()
        assert written_off and sum(m.units for m in written_off) < 0
        assert db.session.get(Package, package_id).price_cents == 777
