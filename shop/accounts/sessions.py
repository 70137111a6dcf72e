"""Server-side sessions behind Flask's signed cookie.

The cookie carries a random token; the database keeps its hash with the user, the times and whether
the second factor is done. Signing out revokes the row, so a copied cookie is worthless afterwards;
disabling an account or changing its password revokes the account's other rows. Idle and absolute
timeouts are checked on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import sqlalchemy as sa
from flask import current_app, g, has_request_context, request, session

from shop.accounts.models import User, UserSession
from shop.audit import client_ip, utcnow
from shop.database import begin_write
from shop.extensions import db

SESSION_KEY = "sid"
TOUCH_EVERY = dt.timedelta(seconds=60)  # write last_seen at most once a minute


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(user: User, *, two_factor_done: bool) -> UserSession:
    """Open a new session for `user`; the caller commits. Everything from before is dropped, so
    a session id planted before sign-in is never promoted (no fixation)."""
    carried = session.get("cart")  # a visitor's cart survives signing in, to be merged
    session.clear()
    if carried:
        session["cart"] = carried
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=hash_token(token),
        user_id=user.id,
        two_factor_done=two_factor_done,
        ip=client_ip(),
        user_agent=(request.user_agent.string or "")[:200],
    )
    db.session.add(row)
    session[SESSION_KEY] = token
    session.permanent = True
    g.pop("user_session", None)
    return row


def _idle_limit(user: User) -> dt.timedelta:
    minutes = current_app.config[
        "SESSION_IDLE_MINUTES_STAFF" if user.is_staff else "SESSION_IDLE_MINUTES_CUSTOMER"
    ]
    return dt.timedelta(minutes=minutes)


def _load() -> UserSession | None:
    token = session.get(SESSION_KEY)
    if not token:
        return None
    row = db.session.scalars(
        sa.select(UserSession)
        .where(UserSession.token_hash == hash_token(token), UserSession.revoked_at.is_(None))
        .options(sa.orm.joinedload(UserSession.user))
    ).first()
    if row is None:
        return None
    now = utcnow()
    absolute = dt.timedelta(hours=current_app.config["SESSION_ABSOLUTE_HOURS"])
    expired = (
        not row.user.active
        or now - row.last_seen_at > _idle_limit(row.user)
        or now - row.created_at > absolute
    )
    if expired or now - row.last_seen_at > TOUCH_EVERY:
        # A write after the read above: take the write lock first (see begin_write).
        row_id = row.id
        begin_write()
        values = {"revoked_at": now} if expired else {"last_seen_at": now}
        db.session.execute(sa.update(UserSession).where(UserSession.id == row_id).values(**values))
        db.session.commit()
    return None if expired else row


def current() -> UserSession | None:
    """This request's valid session row, or None. Cached for the request."""
    if not has_request_context():
        return None
    if "user_session" not in g:
        g.user_session = _load()
    return g.user_session


def signed_in_user() -> User | None:
    """The user of a fully signed-in session (both factors done)."""
    row = current()
    return row.user if row is not None and row.two_factor_done else None


def pending_user() -> User | None:
    """The user of a session that passed the password step and owes the second factor."""
    row = current()
    return row.user if row is not None and not row.two_factor_done else None


def end() -> None:
    """Revoke this browser's session; the caller commits."""
    row = current()
    if row is not None:
        row.revoked_at = utcnow()
    session.clear()
    g.pop("user_session", None)


def revoke_all(user: User, *, except_row: UserSession | None = None) -> int:
    """Revoke every open session of `user` (but `except_row`); the caller commits."""
    stmt = (
        sa.update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if except_row is not None:
        stmt = stmt.where(UserSession.id != except_row.id)
    return db.session.execute(stmt).rowcount
