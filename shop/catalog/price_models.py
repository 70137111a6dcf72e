"""Price history and scheduled price changes of packages."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.accounts.models import User
from shop.audit import utcnow
from shop.catalog.models import Package
from shop.extensions import db

PRICE_CHANGE_KINDS = ("price", "added", "retired", "restored")


class PriceChange(db.Model):
    """One change to a package: a new price, a package added, retired or restored.

    A change with `effective_at` in the future is scheduled: it is applied (applied_at set) by the
    worker when its time comes, unless cancelled first. The history is the applied rows.
    """

    __tablename__ = "price_change"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('price', 'added', 'retired', 'restored')", name="kind"),
        sa.CheckConstraint("new_price_cents > 0", name="new_price_positive"),
        sa.Index("ix_price_change_pending", "effective_at",
                 sqlite_where=sa.text("applied_at IS NULL AND cancelled_at IS NULL"),
                 postgresql_where=sa.text("applied_at IS NULL AND cancelled_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    package_id: Mapped[int] = mapped_column(sa.ForeignKey("package.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(10), default="price")
    old_price_cents: Mapped[int | None]
    new_price_cents: Mapped[int]
    reason: Mapped[str] = mapped_column(sa.String(200), default="")
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    effective_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]

    package: Mapped[Package] = relationship()
    actor: Mapped[User | None] = relationship()
