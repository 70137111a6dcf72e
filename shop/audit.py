"""Append-only audit log: who did what to which record, when (UTC) and from where.

`record()` adds the row to the current session, so it commits or rolls back together with the change
it describes. Nothing in the application updates or deletes audit rows. Details never carry
passwords, tokens or card data: `record()` drops any key that looks like one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, request
from flask_login import current_user
from sqlalchemy.orm import Mapped, mapped_column

from shop.extensions import db

SECRET_WORDS = ("password", "token", "secret", "card", "cvc", "otp", "recovery")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class AuditEvent(db.Model):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(index=True)  # no FK: the log outlives accounts
    actor_email: Mapped[str | None] = mapped_column(sa.String(254))
    actor_role: Mapped[str | None] = mapped_column(sa.String(20))
    action: Mapped[str] = mapped_column(sa.String(60), index=True)
    object_type: Mapped[str | None] = mapped_column(sa.String(40))
    object_id: Mapped[str | None] = mapped_column(sa.String(64))
    details: Mapped[str] = mapped_column(sa.Text, default="{}")
    ip: Mapped[str | None] = mapped_column(sa.String(45))

    @property
    def details_dict(self) -> dict[str, Any]:
        return json.loads(self.details or "{}")


def _scrub(details: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in details.items()
        if not any(word in key.lower() for word in SECRET_WORDS)
    }


def client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def record(
    action: str,
    *,
    object_type: str | None = None,
    object_id: object = None,
    actor: Any = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit row to the current transaction. `actor` defaults to the signed-in user."""
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    event = AuditEvent(
        at=utcnow(),
        actor_id=getattr(actor, "id", None),
        actor_email=getattr(actor, "email", None),
        actor_role=getattr(actor, "role", None),
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        details=json.dumps(_scrub(details), default=str, sort_keys=True),
        ip=client_ip(),
    )
    db.session.add(event)
    return event
