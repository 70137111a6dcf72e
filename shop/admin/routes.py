"""Admin pages."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, render_template, request

from shop import access
from shop.audit import AuditEvent
from shop.database import LIKE_ESCAPE, contains_pattern
from shop.extensions import db

bp = Blueprint("admin", __name__, url_prefix="/admin")
PAGE_SIZE = 50


def _date_arg(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


@bp.get("/")
@access.admin
def dashboard() -> str:
    return render_template("admin/dashboard.html")


@bp.get("/audit")
@access.admin
def audit_log() -> str:
    """The audit log, newest first, filtered by actor, action and date; keyset pagination."""
    actor = request.args.get("actor", "").strip().lower()[:254]
    action = request.args.get("action", "").strip()[:60]
    date_from, date_to = _date_arg("from"), _date_arg("to")
    before = request.args.get("before", type=int)

    stmt = sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE_SIZE + 1)
    if actor:
        stmt = stmt.where(AuditEvent.actor_email.like(contains_pattern(actor), escape=LIKE_ESCAPE))
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if date_from:
        stmt = stmt.where(AuditEvent.at >= dt.datetime.combine(date_from, dt.time.min))
    if date_to:
        stmt = stmt.where(AuditEvent.at < dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min))
    if before:
        stmt = stmt.where(AuditEvent.id < before)
    events = list(db.session.scalars(stmt))
    more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    actions = list(db.session.scalars(sa.select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
    filters = {"actor": actor, "action": action,
               "from": date_from.isoformat() if date_from else "",
               "to": date_to.isoformat() if date_to else ""}
    return render_template("admin/audit.html", events=events, actions=actions, filters=filters,
                           next_before=events[-1].id if more and events else None)
