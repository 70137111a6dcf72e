"""Account domain logic. Each public function owns its transaction: it validates, changes, records
the audit row and commits together, or raises/returns errors having changed nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import current_app

from shop import audit
from shop.accounts import passwords, secret_box, sessions, two_factor
from shop.accounts.email_address import normalise_email
from shop.accounts.models import (
    INVITATION,
    RESET,
    ROLES,
    Address,
    PasswordReset,
    PendingRegistration,
    ProfileEntry,
    User,
)
from shop.audit import utcnow
from shop.database import begin_write
from shop.extensions import db
from shop.notifications.services import enqueue


@dataclass
class FormErrors(Exception):
    """Field name -> message, for the form to show beside each field."""

    errors: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.errors)


def find_user_by_email(email: str) -> User | None:
    try:
        normalised = normalise_email(email)
    except ValueError:
        return None
    return db.session.scalars(sa.select(User).where(User.email == normalised)).first()


def age_on(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _check_birth_date(born: dt.date | None, errors: dict[str, str], *, adult: bool = True) -> None:
    today = dt.date.today()
    if born is None:
        errors["date_of_birth"] = "Enter your date of birth."
    elif born > today:
        errors["date_of_birth"] = "The date of birth cannot be in the future."
    elif age_on(born, today) > 125:
        errors["date_of_birth"] = "Check the year of your date of birth."
    elif adult and age_on(born, today) < 18:
        errors["date_of_birth"] = "You must be 18 or older to have an account."


def _account_fields(
    email: str, password: str, legal_name: str, date_of_birth: dt.date | None, role: str
) -> tuple[str, str, dict[str, str]]:
    """The normalised address and name of a new account, and a message per field that is wrong.
    Whether the address already has an account is the caller's question."""
    errors: dict[str, str] = {}
    try:
        email = normalise_email(email)
    except ValueError as error:
        errors["email"] = f"Enter a valid email address ({error})."
    legal_name = " ".join(legal_name.split())
    if not legal_name:
        errors["legal_name"] = "Enter your full legal name, as on your prescriptions."
    if role not in ROLES:
        errors["role"] = f"Role must be one of {', '.join(ROLES)}."
    if role == "customer":
        _check_birth_date(date_of_birth, errors)
    if problems := passwords.problems(password, email=email, name=legal_name):
        errors["password"] = problems[0]
    return email, legal_name, errors


def create_user(
    *,
    email: str,
    password: str,
    legal_name: str,
    date_of_birth: dt.date | None,
    role: str = "customer",
    actor: User | None = None,
    consent: bool = False,
) -> User:
    """Create an account (the console and tests; visitors register through start_registration).

    :raise FormErrors: with a message per field; nothing is saved.
    """
    email, legal_name, errors = _account_fields(email, password, legal_name, date_of_birth, role)
    if "email" not in errors and find_user_by_email(email) is not None:
        errors["email"] = "An account with this email address already exists. Sign in instead."
    if errors:
        raise FormErrors(errors)
    password_hash = passwords.hash_password(password)
    # The write lock only after the slow hash; a registration racing this one for the same address
    # is caught by the unique index below.
    begin_write()
    user = User(
        email=email,
        password_hash=password_hash,
        legal_name=legal_name,
        date_of_birth=date_of_birth,
        role=role,
        privacy_consent_at=utcnow() if consent else None,
    )
    db.session.add(user)
    try:
        db.session.flush()
        audit.record(
            "account.created", object_type="user", object_id=user.id, actor=actor or user, role=role
        )
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise FormErrors({"email": "An account with this email address already exists."}) from None
    return user


REGISTRATION_LINK_HOURS = 24


@dataclass(frozen=True)
class RegistrationLinks:
    """Where the registration emails point (built on PUBLIC_URL by the caller)."""

    confirm: Callable[[str], str]  # token -> the link that finishes the registration
    sign_in: str
    reset: str


def start_registration(
    *, email: str, password: str, legal_name: str, date_of_birth: dt.date | None, consent: bool,
    links: RegistrationLinks,
) -> str:
    """Register a visitor: email the address a link that finishes creating the account or, when the
    address already has an account, tell its owner that someone tried. Returns the normalised
    address; the caller shows the same page either way, so the form reveals nobody's account.

    :raise FormErrors: with a message per field (never about an existing account); nothing is saved.
    """
    email, legal_name, errors = _account_fields(email, password, legal_name, date_of_birth, "customer")
    if errors:
        raise FormErrors(errors)
    # Both answers hash the password, so they take about as long (scrypt is most of the work);
    # before the write lock, like create_user.
    password_hash = passwords.hash_password(password)
    begin_write()
    now = utcnow()
    db.session.execute(sa.delete(PendingRegistration).where(PendingRegistration.expires_at < now))
    pharmacy = current_app.config["PHARMACY_NAME"]
    owner = find_user_by_email(email)
    if owner is not None:
        enqueue(
            to=owner.email,
            subject=f"Someone tried to create a {pharmacy} account with your address",
            body=(
                f"Hello {owner.legal_name},\n\nSomeone tried to create an account with this email "
                f"address, which already has one. If it was you, sign in:\n\n{links.sign_in}\n\nor, if "
                f"you forgot your password, choose a new one:\n\n{links.reset}\n\nIf it was not you, "
                f"ignore this message: nothing has changed and no second account was made.\n\n{pharmacy}"
            ),
            kind="registration_existing",
            user_id=owner.id,
        )
        audit.record("registration.existing_address", object_type="user", object_id=owner.id)
    else:
        token = secrets.token_urlsafe(32)
        db.session.add(PendingRegistration(
            token_hash=_token_hash(token), email=email, password_hash=password_hash,
            legal_name=legal_name, date_of_birth=date_of_birth,
            privacy_consent_at=now if consent else None,
            expires_at=now + dt.timedelta(hours=REGISTRATION_LINK_HOURS),
        ))
        enqueue(
            to=email,
            subject=f"Finish creating your {pharmacy} account",
            body=(
                f"Hello {legal_name},\n\nOpen this link within {REGISTRATION_LINK_HOURS} hours to finish "
                f"creating your account:\n\n{links.confirm(token)}\n\nIf you did not ask for an "
                f"account, ignore this message: none is made without the link.\n\n{pharmacy}"
            ),
            kind="registration",
        )
        audit.record("registration.started", email=email)
    db.session.commit()
    return email


def valid_registration(token: str) -> PendingRegistration | None:
    pending = db.session.scalars(
        sa.select(PendingRegistration).where(PendingRegistration.token_hash == _token_hash(token))
    ).first()
    if pending is None or pending.expires_at < utcnow():
        return None
    return pending


def confirm_registration(token: str, password: str) -> User:
    """Create the account of a registration whose emailed link was opened with the password chosen
    at registration; the other links for that address stop working. The password is what stops
    someone who registered another person's address from having that person open their link and
    then use an account whose password they know.

    :raise FormErrors: "password" when it is not the one chosen at registration (nothing changes);
        "token" when the link is unknown, expired, or its address has an account meanwhile.
    """
    invalid = FormErrors({"token": "This link is invalid, has expired or was already used."})
    pending = valid_registration(token)
    # The slow hash before the write lock, as in authenticate.
    if pending is not None and not passwords.verify_password(pending.password_hash, password):
        db.session.rollback()
        raise FormErrors({"password": "That is not the password you chose when you registered."})
    checked_hash = pending.password_hash if pending is not None else None
    begin_write()
    pending = valid_registration(token)
    if (pending is None or pending.password_hash != checked_hash
            or find_user_by_email(pending.email) is not None):
        db.session.rollback()
        raise invalid
    user = User(
        email=pending.email,
        password_hash=pending.password_hash,
        legal_name=pending.legal_name,
        date_of_birth=pending.date_of_birth,
        role="customer",
        privacy_consent_at=pending.privacy_consent_at,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except sa.exc.IntegrityError:  # PostgreSQL: another link for the address won the race
        db.session.rollback()
        raise invalid from None
    db.session.execute(sa.delete(PendingRegistration).where(PendingRegistration.email == user.email))
    audit.record("account.created", object_type="user", object_id=user.id, actor=user, role=user.role,
                 email_confirmed=True)
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The account, when the email and password match an active one. Failures are audited and
    indistinguishable to the caller (same answer, same work)."""
    user = find_user_by_email(email)
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        begin_write()  # only now: the slow hash above must not hold SQLite's write lock
        reason = "unknown email" if user is None else ("disabled" if ok else "wrong password")
        audit.record(
            "sign_in.failed", object_type="user", object_id=user.id if user else None,
            actor=user, email=email.strip()[:254], reason=reason,
        )
        db.session.commit()
        return None
    return user


def sign_in(user: User) -> bool:
    """Start a session after the password step. Returns True when a second factor is still owed."""
    begin_write()
    owes_second_factor = user.needs_two_factor
    sessions.start(user, two_factor_done=not owes_second_factor)
    if owes_second_factor:
        audit.record("sign_in.password_accepted", object_type="user", object_id=user.id, actor=user)
    else:
        user.last_sign_in_at = utcnow()
        audit.record("sign_in.succeeded", object_type="user", object_id=user.id, actor=user)
    db.session.commit()
    return owes_second_factor


def complete_second_factor(user: User, code: str) -> bool:
    """Finish sign-in with a TOTP code or a recovery code."""
    begin_write()
    row = sessions.current()
    assert row is not None and row.user_id == user.id
    method = None
    if two_factor.verify_code(user, code):
        method = "totp"
    elif two_factor.use_recovery_code(user, code):
        method = "recovery_code"
    if method is None:
        audit.record("sign_in.second_factor_failed", object_type="user", object_id=user.id, actor=user)
        db.session.commit()
        return False
    row.two_factor_done = True
    user.last_sign_in_at = utcnow()
    audit.record("sign_in.succeeded", object_type="user", object_id=user.id, actor=user, method=method)
    db.session.commit()
    return True


def two_factor_setup_secret(user: User) -> str:
    """The two-factor secret this browser is setting up for `user`: derived on the server, so the page
    (a GET) stores nothing and the confirming POST computes the same secret. Never in the session
    cookie, which is signed but readable by anyone who holds it; the page shows it (and its QR code)
    only to the signed-in browser."""
    row = sessions.current()
    assert row is not None and row.user_id == user.id  # the access rule requires this browser's session
    return two_factor.setup_secret(row.id, row.token_hash, user.id)


def enable_two_factor(user: User, secret: str, code: str) -> list[str] | None:
    """Turn on TOTP once the user proves their app has `secret`. Returns the recovery codes to show
    once, or None when the code is wrong (nothing changes). Completes a pending sign-in."""
    begin_write()
    step = two_factor.matching_step(secret, code)
    if step is None:
        return None
    user.totp_secret = secret_box.seal(user.id, secret)
    user.totp_enabled = True
    user.totp_last_step = step
    codes = two_factor.new_recovery_codes(user)
    row = sessions.current()
    if row is not None and not row.two_factor_done:
        row.two_factor_done = True
        user.last_sign_in_at = utcnow()
        audit.record("sign_in.succeeded", object_type="user", object_id=user.id, actor=user,
                     method="totp_enrolment")
    audit.record("two_factor.enabled", object_type="user", object_id=user.id, actor=user)
    db.session.commit()
    return codes


def disable_two_factor(user: User, password: str) -> bool:
    """Customers may turn two-factor sign-in off again (staff may not)."""
    if user.is_staff or not passwords.verify_password(user.password_hash, password):
        return False
    begin_write()  # after the slow hash, which must not hold SQLite's write lock
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None
    two_factor.new_recovery_codes(user)  # replaces (invalidates) the old ones
    audit.record("two_factor.disabled", object_type="user", object_id=user.id, actor=user)
    db.session.commit()
    return True


def sign_out() -> None:
    begin_write()
    row = sessions.current()
    if row is not None:
        audit.record("sign_out", object_type="user", object_id=row.user_id, actor=row.user)
    sessions.end()
    db.session.commit()


def change_password(user: User, current_password: str, new_password: str) -> None:
    """:raise FormErrors: wrong current password or a refused new one; nothing changes."""
    errors = {}
    if not passwords.verify_password(user.password_hash, current_password):
        errors["current_password"] = "Your current password is not correct."  # noqa: S105 - a field name
    elif problems := passwords.problems(new_password, email=user.email, name=user.legal_name):
        errors["new_password"] = problems[0]
    elif current_password == new_password:
        errors["new_password"] = "Choose a password different from the current one."  # noqa: S105 - a field name
    # The slow hashes come first, outside SQLite's write lock (taken just before the writes).
    new_hash = None if errors else passwords.hash_password(new_password)
    begin_write()
    if errors:
        audit.record("password.change_failed", object_type="user", object_id=user.id, actor=user)
        db.session.commit()
        raise FormErrors(errors)
    user.password_hash = new_hash
    user.password_changed_at = utcnow()
    ended = sessions.revoke_all(user, except_row=sessions.current())
    audit.record("password.changed", object_type="user", object_id=user.id, actor=user,
                 other_sessions_ended=ended)
    db.session.commit()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_password_reset(email: str, link_for: Callable[[str], str]) -> None:
    """Email a single-use, expiring reset link when the account exists. The caller shows the same
    answer either way, so the form does not reveal who has an account."""
    begin_write()
    user = find_user_by_email(email)
    if user is None or not user.active:
        audit.record("password_reset.requested_unknown", email=email.strip()[:254])
        db.session.commit()
        return
    token = secrets.token_urlsafe(32)
    minutes = current_app.config["PASSWORD_RESET_MINUTES"]
    db.session.add(
        PasswordReset(
            token_hash=_token_hash(token),
            user_id=user.id,
            expires_at=utcnow() + dt.timedelta(minutes=minutes),
        )
    )
    pharmacy = current_app.config["PHARMACY_NAME"]
    enqueue(
        to=user.email,
        subject=f"Reset your {pharmacy} password",
        body=(
            f"Hello {user.legal_name},\n\nSomeone (we hope you) asked to reset the password of "
            f"your account. Open this link within {minutes} minutes to choose a new one:\n\n"
            f"{link_for(token)}\n\nThe link works once. If you did not ask for it, ignore this "
            f"message: your password stays as it is.\n\n{pharmacy}"
        ),
        kind="password_reset",
        user_id=user.id,
    )
    audit.record("password_reset.requested", object_type="user", object_id=user.id, actor=user)
    db.session.commit()


def add_password_link(user: User, lifetime: dt.timedelta, purpose: str = RESET) -> str:
    """A new single-use token with which `user` chooses a password at the reset page, valid for
    `lifetime`: the reset mechanism with a lifetime of the caller's choosing (a staff invitation
    lasts longer than a reset). Adds the row to the caller's transaction; the caller commits it
    together with the email that carries the link."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        PasswordReset(token_hash=_token_hash(token), user_id=user.id, purpose=purpose,
                      expires_at=utcnow() + lifetime)
    )
    return token


def pending_invitations(user_ids: Collection[int]) -> dict[int, dt.datetime]:
    """The accounts among `user_ids` whose owner has not chosen a password yet: an admin invited them
    and no password link of theirs has been used since (only a link can set the first password:
    nobody knows the random one an invited account starts with). Each maps to the expiry of its
    newest invitation link, which may be past."""
    if not user_ids:
        return {}
    chose_a_password = sa.select(PasswordReset.user_id).where(PasswordReset.used_at.is_not(None))
    rows = db.session.execute(
        sa.select(PasswordReset.user_id, sa.func.max(PasswordReset.expires_at))
        .where(PasswordReset.user_id.in_(list(user_ids)), PasswordReset.purpose == INVITATION,
               PasswordReset.user_id.not_in(chose_a_password))
        .group_by(PasswordReset.user_id)
    )
    return {user_id: expires_at for user_id, expires_at in rows}


def valid_reset(token: str) -> PasswordReset | None:
    reset = db.session.scalars(
        sa.select(PasswordReset).where(PasswordReset.token_hash == _token_hash(token))
    ).first()
    if reset is None or reset.used_at is not None or reset.expires_at < utcnow():
        return None
    if not reset.user.active:
        return None
    return reset


def reset_password(token: str, new_password: str) -> User:
    """Set a new password through a reset link; the link is used up and every session ends.

    :raise FormErrors: the link is invalid, used or expired, or the password is refused.
    """
    reset = valid_reset(token)
    if reset is None:
        raise FormErrors({"token": "This reset link is invalid, expired or already used."})
    user = reset.user
    if problems := passwords.problems(new_password, email=user.email, name=user.legal_name):
        raise FormErrors({"password": problems[0]})
    reset_id, new_hash = reset.id, passwords.hash_password(new_password)
    begin_write()  # after the slow hash, which must not hold SQLite's write lock
    # Conditional update: of two requests racing with the same link, exactly one wins.
    claimed = db.session.execute(
        sa.update(PasswordReset)
        .where(PasswordReset.id == reset_id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise FormErrors({"token": "This reset link is invalid, expired or already used."})
    user.password_hash = new_hash
    user.password_changed_at = utcnow()
    sessions.revoke_all(user)
    audit.record("password.reset", object_type="user", object_id=user.id, actor=user)
    db.session.commit()
    return user


def set_role(user: User, role: str, actor: User) -> None:
    """:raise FormErrors: unknown role, or an admin removing their own admin role."""
    begin_write()
    if role not in ROLES:
        raise FormErrors({"role": f"Role must be one of {', '.join(ROLES)}."})
    if user.id == actor.id and user.role == "admin" and role != "admin":
        raise FormErrors({"role": "You cannot remove your own admin role."})
    old = user.role
    if old == role:
        return
    user.role = role
    sessions.revoke_all(user)  # privileges changed: sign in again
    audit.record("user.role_changed", object_type="user", object_id=user.id, actor=actor,
                 old_role=old, new_role=role)
    db.session.commit()


def set_active(user: User, active: bool, actor: User) -> None:
    begin_write()
    if user.id == actor.id and not active:
        raise FormErrors({"active": "You cannot disable your own account."})
    user.active = active
    if not active:
        sessions.revoke_all(user)
    audit.record("user.enabled" if active else "user.disabled", object_type="user",
                 object_id=user.id, actor=actor)
    db.session.commit()


# Patient profile ---------------------------------------------------------------------------------


def update_profile(
    user: User, *, legal_name: str, date_of_birth: dt.date | None, phone: str, consent: bool
) -> None:
    """:raise FormErrors: nothing is saved."""
    begin_write()
    errors: dict[str, str] = {}
    legal_name = " ".join(legal_name.split())
    if not legal_name:
        errors["legal_name"] = "Enter your full legal name, as on your prescriptions."
    _check_birth_date(date_of_birth, errors)
    phone = phone.strip()
    if phone and sum(ch in "0123456789" for ch in phone) < 7:
        errors["phone"] = "Enter a phone number with its area code."
    if errors:
        raise FormErrors(errors)
    changed = [
        name
        for name, old, new in (
            ("legal_name", user.legal_name, legal_name),
            ("date_of_birth", user.date_of_birth, date_of_birth),
            ("phone", user.phone, phone),
            ("privacy_consent", user.privacy_consent_at is not None, consent),
        )
        if old != new
    ]
    user.legal_name, user.date_of_birth, user.phone = legal_name, date_of_birth, phone
    if consent and user.privacy_consent_at is None:
        user.privacy_consent_at = utcnow()
    elif not consent:
        user.privacy_consent_at = None
    if changed:
        audit.record("profile.updated", object_type="user", object_id=user.id, fields=changed)
    db.session.commit()


# ASCII digits only: str.isdigit() would also let "٩٧٢٠٤" or "²" through onto a parcel label.
ZIP_CODE = re.compile(r"[0-9]{5}(?:-[0-9]{4})?")
ADDRESS_FIELDS = ("recipient", "line1", "line2", "city", "state", "postal_code", "country", "phone")
REQUIRED_ADDRESS_FIELDS = {
    "recipient": "Enter the name of the person receiving the parcel.",
    "line1": "Enter the street address.",
    "city": "Enter the city.",
    "state": "Enter the state.",
    "postal_code": "Enter the ZIP code.",
}


def _clean_address(values: dict[str, str]) -> dict[str, str]:
    cleaned = {key: " ".join(str(values.get(key, "")).split()) for key in ADDRESS_FIELDS}
    cleaned["country"] = (cleaned["country"] or "US").upper()
    cleaned["state"] = cleaned["state"].upper()
    errors = {key: message for key, message in REQUIRED_ADDRESS_FIELDS.items() if not cleaned[key]}
    if cleaned["country"] != "US":
        errors["country"] = "We ship only within the United States."
    if cleaned["postal_code"] and not ZIP_CODE.fullmatch(cleaned["postal_code"]):
        errors["postal_code"] = "Enter a 5-digit ZIP code (or ZIP+4, like 97204-1234)."
    if errors:
        raise FormErrors(errors)
    return cleaned


def owned_address(user: User, address_id: int) -> Address | None:
    """The address, only when it belongs to `user` (anyone else's id looks like a missing one)."""
    return db.session.scalars(
        sa.select(Address).where(Address.id == address_id, Address.user_id == user.id)
    ).first()


def _make_default(user: User, address: Address) -> None:
    for other in user.addresses:
        other.is_default = other is address


def save_address(user: User, values: dict[str, str], *, address: Address | None = None,
                 make_default: bool = False) -> Address:
    """Add or edit an address. :raise FormErrors: nothing is saved."""
    begin_write()
    cleaned = _clean_address(values)
    if address is None:
        address = Address(user=user, **cleaned)
        db.session.add(address)
        action = "address.added"
    else:
        for key, value in cleaned.items():
            setattr(address, key, value)
        action = "address.updated"
    if make_default or not any(a.is_default for a in user.addresses if a is not address):
        _make_default(user, address)
    db.session.flush()
    audit.record(action, object_type="address", object_id=address.id)
    db.session.commit()
    return address


def set_default_address(user: User, address: Address) -> None:
    begin_write()
    _make_default(user, address)
    audit.record("address.made_default", object_type="address", object_id=address.id)
    db.session.commit()


def delete_address(user: User, address: Address) -> None:
    begin_write()
    was_default = address.is_default
    address_id = address.id
    user.addresses.remove(address)
    if was_default and user.addresses:
        user.addresses[0].is_default = True
    audit.record("address.deleted", object_type="address", object_id=address_id)
    db.session.commit()


PROFILE_ENTRY_LABELS = {
    "allergy": "allergy",
    "medication": "current medication",
    "condition": "health condition",
}


def add_profile_entry(user: User, kind: str, text: str) -> ProfileEntry:
    begin_write()
    text = " ".join(text.split())
    if kind not in PROFILE_ENTRY_LABELS:
        raise FormErrors({"kind": "Choose allergy, medication or condition."})
    if not text:
        raise FormErrors({f"{kind}_text": f"Type the {PROFILE_ENTRY_LABELS[kind]} to add."})
    if len(text) > 200:
        raise FormErrors({f"{kind}_text": "Keep each entry under 200 characters."})
    if any(e.kind == kind and e.text.lower() == text.lower() for e in user.profile_entries):
        raise FormErrors({f"{kind}_text": f"“{text}” is already on your list."})
    entry = ProfileEntry(user=user, kind=kind, text=text)
    db.session.add(entry)
    db.session.flush()
    audit.record("profile.entry_added", object_type="profile_entry", object_id=entry.id, kind=kind)
    db.session.commit()
    return entry


def owned_profile_entry(user: User, entry_id: int) -> ProfileEntry | None:
    return db.session.scalars(
        sa.select(ProfileEntry).where(ProfileEntry.id == entry_id, ProfileEntry.user_id == user.id)
    ).first()


def remove_profile_entry(user: User, entry: ProfileEntry) -> None:
    begin_write()
    entry_id, kind = entry.id, entry.kind
    user.profile_entries.remove(entry)
    audit.record("profile.entry_removed", object_type="profile_entry", object_id=entry_id, kind=kind)
    db.session.commit()
