"""Admin user management: find accounts, create staff accounts by invitation, change roles, disable
and enable accounts.

Each change function owns its transaction: it takes the write lock, checks the rules, changes the
account, records who changed what from what to what, and commits; a refusal raises FormErrors having
changed nothing. The rules: an account has one role; an admin cannot demote or disable themselves;
the last active admin can never be demoted or disabled. A role change or a disable ends every session
of the account, so its new privileges (or none) apply at once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from shop import audit
from shop.accounts import passwords, sessions
from shop.accounts.models import ADMIN, INVITATION, ROLES, STAFF_ROLES, PasswordReset, User
from shop.accounts.services import (
    FormErrors,
    add_password_link,
    find_user_by_email,
    normalise_email,
    pending_invitations,
)
from shop.audit import AuditEvent, utcnow
from shop.database import LIKE_ESCAPE, begin_write, contains_pattern
from shop.extensions import db
from shop.notifications.services import enqueue

PAGE_SIZE = 50
STATUSES = ("active", "disabled")
DEFAULT_INVITATION_HOURS = 72


@dataclass(frozen=True)
class UserPage:
    users: list[User]
    next_before: int | None  # the id to continue from, when there are more


def search(
    query: str = "", role: str = "", status: str = "", before: int | None = None, limit: int = PAGE_SIZE
) -> UserPage:
    """Accounts whose email or legal name contains `query` (any case), newest first, by keyset."""
    stmt = sa.select(User).order_by(User.id.desc()).limit(limit + 1)
    query = query.strip().lower()
    if query:
        pattern = contains_pattern(query)
        stmt = stmt.where(
            sa.or_(
                User.email.like(pattern, escape=LIKE_ESCAPE),  # stored lower-case
                sa.func.lower(User.legal_name).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    if role in ROLES:
        stmt = stmt.where(User.role == role)
    if status in STATUSES:
        stmt = stmt.where(User.active.is_(status == "active"))
    if before is not None:
        stmt = stmt.where(User.id < before)
    users = list(db.session.scalars(stmt))
    more = len(users) > limit
    users = users[:limit]
    return UserPage(users, users[-1].id if more and users else None)


def active_admin_count() -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(User).where(User.role == ADMIN, User.active.is_(True))
    ) or 0


def recent_events(user: User, limit: int = 10) -> list[AuditEvent]:
    """The latest audit rows about the account itself (sign-ins, role and status changes)."""
    stmt = (
        sa.select(AuditEvent)
        .where(AuditEvent.object_type == "user", AuditEvent.object_id == str(user.id))
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(stmt))


def invitation_hours() -> int:
    return int(current_app.config.get("STAFF_INVITATION_HOURS", DEFAULT_INVITATION_HOURS))


def create_staff_account(
    *, email: str, legal_name: str, role: str, actor: User, link_for: Callable[[str], str]
) -> User:
    """Create a pharmacist or admin account and email it a link to choose its password.

    The admin never types or sees a password: the account starts with the hash of a random secret
    nobody knows, and the emailed link (the password-reset mechanism, valid for
    STAFF_INVITATION_HOURS) sets the real one. Two-factor enrolment follows at first sign-in.

    :raise FormErrors: with a message per field; nothing is saved and no email is queued.
    """
    errors: dict[str, str] = {}
    try:
        email = normalise_email(email)
    except ValueError as error:
        errors["email"] = f"Enter a valid email address ({error})."
    legal_name = " ".join(legal_name.split())
    if not legal_name:
        errors["legal_name"] = "Enter their full legal name."
    if role not in STAFF_ROLES:
        errors["role"] = "Choose pharmacist or admin."
    if "email" not in errors and find_user_by_email(email) is not None:
        errors["email"] = "An account with this email address already exists: change its role instead."
    if errors:
        db.session.rollback()
        raise FormErrors(errors)
    password_hash = passwords.hash_password(secrets.token_urlsafe(32))
    begin_write()  # after the slow hash; a second invitation to the address meets the unique index
    user = User(
        email=email,
        password_hash=password_hash,
        legal_name=legal_name,
        date_of_birth=None,
        role=role,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise FormErrors({"email": "An account with this email address already exists."}) from None
    hours = _send_invitation(user, actor, link_for)
    audit.record("account.created", object_type="user", object_id=user.id, actor=actor,
                 email=user.email, role=role, invited=True, link_valid_hours=hours)
    db.session.commit()
    return user


def _send_invitation(user: User, actor: User, link_for: Callable[[str], str], *, again: bool = False) -> int:
    """Add an invitation link for `user` and queue the email that carries it, in the caller's
    transaction. Returns the hours the link is valid."""
    hours = invitation_hours()
    token = add_password_link(user, dt.timedelta(hours=hours), purpose=INVITATION)
    pharmacy = current_app.config["PHARMACY_NAME"]
    article = "an" if user.role == ADMIN else "a"
    replaces = " It replaces the link we sent before, which no longer works." if again else ""
    enqueue(
        to=user.email,
        subject=f"Your {user.role} account at {pharmacy}: choose your password",
        body=(
            f"Hello {user.legal_name},\n\n{actor.legal_name} has created {article} {user.role} account for "
            f"you at {pharmacy}, signing in as {user.email}. Open this link within {hours} hours to "
            f"choose your password:\n\n{link_for(token)}\n\nThe link works once.{replaces} When you "
            f"first sign in you will set up two-factor sign-in with an authenticator app on your phone."
            f"\n\nIf you did not expect this message, tell us and ignore the link.\n\n{pharmacy}"
        ),
        kind="staff_invitation",
        user_id=user.id,
    )
    return hours


def invitation_expiry(user: User) -> dt.datetime | None:
    """When the newest invitation link of `user` expires (maybe past), while they have not chosen a
    password; None once they have, or when they were never invited."""
    return pending_invitations([user.id]).get(user.id)


def resend_invitation(user: User, actor: User, link_for: Callable[[str], str]) -> int:
    """Email the invited person a new link to choose their password; every earlier link stops
    working. Returns the hours the new link is valid.

    :raise FormErrors: they have already chosen a password, the account is disabled, or the actor
        is no longer an admin; nothing changes and no email is queued.
    """
    begin_write()
    admins = _lock_admins(user)
    _check_actor(actor, admins, "invitation")
    if invitation_expiry(user) is None:
        _refuse("invitation", f"{user.email} has already chosen a password: there is no invitation "
                              "to resend.")
    if not user.active:
        _refuse("invitation", "This account is disabled: enable it before resending the invitation.")
    now = utcnow()
    ended = db.session.execute(
        sa.update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.purpose == INVITATION,
               PasswordReset.used_at.is_(None), PasswordReset.expires_at > now)
        .values(expires_at=now)
    ).rowcount
    hours = _send_invitation(user, actor, link_for, again=True)
    audit.record("user.invitation_resent", object_type="user", object_id=user.id, actor=actor,
                 email=user.email, link_valid_hours=hours, earlier_links_ended=ended)
    db.session.commit()
    return hours


def _lock_admins(user: User) -> set[int]:
    """Lock the account and every active admin, in id order, and return the active admins' ids.

    On PostgreSQL a concurrent change to these rows (two admins demoting each other) waits here and
    is seen afterwards, so the count below cannot go stale; on SQLite begin_write has already made
    writers take turns. The rows are reloaded, so checks see the committed state.
    """
    rows = db.session.scalars(
        sa.select(User)
        .where(sa.or_(User.id == user.id, sa.and_(User.role == ADMIN, User.active.is_(True))))
        .order_by(User.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {row.id for row in rows if row.role == ADMIN and row.active}


def _refuse(field: str, message: str) -> None:
    db.session.rollback()
    raise FormErrors({field: message})


def _check_removal(user: User, actor: User, admins: set[int], field: str, what: str) -> None:
    """Refuse taking away the admin role or the account of `user` when the rules forbid it."""
    if user.id == actor.id:
        _refuse(field, f"You cannot {what} your own account: ask another admin.")
    if user.id in admins and len(admins) <= 1:
        _refuse(field, f"{user.email} is the last active admin: make another admin before you {what} it.")


def _check_actor(actor: User, admins: set[int], field: str) -> None:
    # The access rule checked the actor when the request began; a change since then counts.
    if actor.id not in admins:
        _refuse(field, "Your account is no longer an active admin.")


def change_role(user: User, role: str, actor: User) -> bool:
    """Give the account `role` (its only role). Returns False when it already had it.

    :raise FormErrors: unknown role, self-demotion, the last active admin, or an actor who is no
        longer an admin; nothing changes.
    """
    begin_write()
    if role not in ROLES:
        _refuse("role", f"Role must be one of {', '.join(ROLES)}.")
    admins = _lock_admins(user)
    old = user.role
    if old == role:
        db.session.rollback()
        return False
    if old == ADMIN:
        _check_removal(user, actor, admins, "role", "remove the admin role from")
    _check_actor(actor, admins, "role")
    user.role = role
    ended = sessions.revoke_all(user)  # privileges changed: sign in again (staff: with two factors)
    audit.record("user.role_changed", object_type="user", object_id=user.id, actor=actor,
                 email=user.email, old_role=old, new_role=role, sessions_ended=ended)
    db.session.commit()
    return True


def disable(user: User, actor: User) -> bool:
    """Disable the account and end all its sessions. Returns False when it was already disabled.

    :raise FormErrors: the actor's own account, the last active admin, or an actor who is no longer
        an admin; nothing changes.
    """
    begin_write()
    admins = _lock_admins(user)
    if not user.active:
        db.session.rollback()
        return False
    _check_removal(user, actor, admins, "active", "disable")
    _check_actor(actor, admins, "active")
    user.active = False
    ended = sessions.revoke_all(user)
    audit.record("user.disabled", object_type="user", object_id=user.id, actor=actor,
                 email=user.email, active_before=True, active_after=False, sessions_ended=ended)
    db.session.commit()
    return True


def enable(user: User, actor: User) -> bool:
    """Let a disabled account sign in again. Returns False when it was already active.

    :raise FormErrors: an actor who is no longer an admin; nothing changes.
    """
    begin_write()
    admins = _lock_admins(user)
    if user.active:
        db.session.rollback()
        return False
    _check_actor(actor, admins, "active")
    user.active = True
    audit.record("user.enabled", object_type="user", object_id=user.id, actor=actor,
                 email=user.email, active_before=False, active_after=True)
    db.session.commit()
    return True

