"""Queue messages in the caller's transaction; the worker sends them through the configured mailer
(shop/notifications/sender.py: SMTP, or the development log)."""

from __future__ import annotations

import sqlalchemy as sa

from shop.extensions import db
from shop.notifications.models import OutboxMessage


def enqueue(*, to: str, subject: str, body: str, kind: str, user_id: int | None = None) -> None:
    """Add a message to the outbox. The caller commits it together with the change it reports."""
    db.session.add(
        OutboxMessage(to_address=to, subject=subject, body=body, kind=kind, user_id=user_id)
    )


def recent_messages(limit: int = 50) -> list[OutboxMessage]:
    stmt = sa.select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    return list(db.session.scalars(stmt))
