"""Users, their server-side sessions, recovery codes, and the patient profile."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shop.audit import utcnow
from shop.extensions import db

CUSTOMER, PHARMACIST, ADMIN = "customer", "pharmacist", "admin"
ROLES = (CUSTOMER, PHARMACIST, ADMIN)
STAFF_ROLES = (PHARMACIST, ADMIN)
PROFILE_KINDS = ("allergy", "medication", "condition")


class User(UserMixin, db.Model):
    __tablename__ = "user_account"
    __table_args__ = (
        sa.CheckConstraint("role IN ('customer', 'pharmacist', 'admin')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored normalised (shop.accounts.email_address), so look-alike spellings are one account.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    legal_name: Mapped[str] = mapped_column(sa.String(160))
    date_of_birth: Mapped[dt.date | None] = mapped_column(sa.Date)
    phone: Mapped[str] = mapped_column(sa.String(40), default="")
    role: Mapped[str] = mapped_column(sa.String(20), default=CUSTOMER)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[dt.datetime | None]
    # Sealed by shop.accounts.secret_box (AES-GCM, bound to this row), never the plain secret.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(200))
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    # The last accepted TOTP time step, so a code cannot be replayed within its window.
    totp_last_step: Mapped[int | None]
    privacy_consent_at: Mapped[dt.datetime | None]

    addresses: Mapped[list[Address]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="Address.id"
    )
    profile_entries: Mapped[list[ProfileEntry]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="ProfileEntry.id"
    )

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled accounts cannot sign in
        return self.active

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def needs_two_factor(self) -> bool:
        """Staff must use two-factor sign-in; customers may choose to."""
        return self.is_staff or self.totp_enabled

    def entries(self, kind: str) -> list[ProfileEntry]:
        return [e for e in self.profile_entries if e.kind == kind]

    @property
    def default_address(self) -> Address | None:
        return next((a for a in self.addresses if a.is_default), None)


class UserSession(db.Model):
    """A signed-in browser. The cookie holds only `token`; signing out revokes the row, so a copied
    cookie stops working at once."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    # False while the password is right but the second factor is still to come.
    two_factor_done: Mapped[bool] = mapped_column(default=False)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str] = mapped_column(sa.String(200), default="")

    user: Mapped[User] = relationship()


class RecoveryCode(db.Model):
    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(256))
    used_at: Mapped[dt.datetime | None]


RESET, INVITATION = "reset", "invitation"


class PasswordReset(db.Model):
    """A single-use, expiring link that sets the account's password. Only the token's hash is stored.
    An invitation is the link that sets the first password of an account an admin created."""

    __tablename__ = "password_reset"
    __table_args__ = (sa.CheckConstraint("purpose IN ('reset', 'invitation')", name="purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(sa.String(20), default=RESET, server_default=RESET)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class PendingRegistration(db.Model):
    """A registration waiting for its owner to open the emailed link. The account is made only then,
    so nobody can hold an address they cannot read, and the registration form answers the same
    whether or not the address already has an account."""

    __tablename__ = "pending_registration"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    email: Mapped[str] = mapped_column(sa.String(254), index=True)  # normalised
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    legal_name: Mapped[str] = mapped_column(sa.String(160))
    date_of_birth: Mapped[dt.date]
    privacy_consent_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]


class Address(db.Model):
    __tablename__ = "address"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    recipient: Mapped[str] = mapped_column(sa.String(160))
    line1: Mapped[str] = mapped_column(sa.String(160))
    line2: Mapped[str] = mapped_column(sa.String(160), default="")
    city: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(40))
    postal_code: Mapped[str] = mapped_column(sa.String(20))
    country: Mapped[str] = mapped_column(sa.String(2), default="US")
    phone: Mapped[str] = mapped_column(sa.String(40), default="")
    is_default: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship(back_populates="addresses")

    def lines(self) -> list[str]:
        parts = [self.recipient, self.line1, self.line2,
                 f"{self.city}, {self.state} {self.postal_code}", self.country]
        return [p for p in parts if p]


class ProfileEntry(db.Model):
    """An allergy, current medication or health condition the patient told us about."""

    __tablename__ = "profile_entry"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('allergy', 'medication', 'condition')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(20))
    text: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="profile_entries")
