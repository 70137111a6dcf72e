"""A signed-in customer's cart, kept in the database."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.audit import utcnow
from shop.catalog.models import Package
from shop.extensions import db


class CartLine(db.Model):
    __tablename__ = "cart_line"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "package_id"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    package_id: Mapped[int] = mapped_column(sa.ForeignKey("package.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(default=1)  # packs
    # The price when added, only to tell the customer it has changed since; never charged.
    price_cents_when_added: Mapped[int]
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    package: Mapped[Package] = relationship()
