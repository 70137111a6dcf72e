"""TOTP two-factor sign-in (RFC 6238) with single-use recovery codes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets

import pyotp
import segno
from flask import current_app
from markupsafe import Markup

from shop.accounts import secret_box
from shop.accounts.models import RecoveryCode, User
from shop.audit import utcnow
from shop.extensions import db

ISSUER = "Clearwater Pharmacy"
RECOVERY_CODES = 10
SIX_DIGITS = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    return pyotp.random_base32()


def setup_secret(session_id: int, session_token_hash: str, user_id: int) -> str:
    """The secret a signed-in browser is offered to set up: an HMAC under the account secrets key
    (ACCOUNT_SECRETS_KEY, known only to the server) of that browser's session and the user, so it is
    the same on every visit of that session, differs for every other session and is stored nowhere
    until enrolment seals it in the account. 160 bits, base32, like new_secret()."""
    message = f"totp-setup:v1:{session_id}:{session_token_hash}:{user_id}".encode()
    digest = hmac.new(secret_box.app_key(current_app), message, hashlib.sha256).digest()
    return base64.b32encode(digest[:20]).decode("ascii")


def provisioning_uri(secret: str, email: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> Markup:
    """The enrolment QR code as inline SVG, drawn here: the secret never leaves the server."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#1c2530", light="#ffffff")
    return Markup(svg)  # noqa: S704 - segno's own SVG output, no user-controlled markup


def matching_step(secret: str, code: str, now: dt.datetime | None = None) -> int | None:
    """The time step whose code equals `code`, allowing one step of clock drift either way."""
    code = "".join(code.split())
    if not SIX_DIGITS.fullmatch(code):  # ASCII only: "²²²²²²" passes str.isdigit()
        return None
    totp = pyotp.TOTP(secret)
    moment = now or dt.datetime.now(dt.UTC)
    for drift in (0, -1, 1):
        at = moment + dt.timedelta(seconds=30 * drift)
        if hmac.compare_digest(totp.at(at), code):
            return totp.timecode(at)
    return None


def verify_code(user: User, code: str) -> bool:
    """Check a TOTP code; a code (or an older one) already used cannot be used again."""
    if not user.totp_secret:
        return False
    try:
        secret = secret_box.open_(user.id, user.totp_secret)
    except secret_box.UnreadableSecret as error:
        # Tampered, copied from another row, or another key: a wrong code to the user, a warning to us.
        current_app.logger.warning("two-factor sign-in refused: %s", error)
        return False
    step = matching_step(secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


def _code_hash(code: str) -> str:
    # Codes are 64 random bits, so a fast hash is enough (unlike a person's password).
    return hashlib.sha256("".join(code.lower().split()).replace("-", "").encode()).hexdigest()


def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes; returns the plain codes to show once."""
    for old in db.session.query(RecoveryCode).filter_by(user_id=user.id):
        db.session.delete(old)
    codes = ["-".join(secrets.token_hex(2) for _ in range(4)) for _ in range(RECOVERY_CODES)]
    for code in codes:
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_code_hash(code)))
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    row = (
        db.session.query(RecoveryCode)
        .filter_by(user_id=user.id, used_at=None, code_hash=_code_hash(code))
        .first()
    )
    if row is None:
        return False
    row.used_at = utcnow()
    return True
