"""Password policy and hashing.

Policy: 12 to 128 characters, not a common password. The common list is zxcvbn's list of the 30,000
most used passwords plus our own list of long ones (common_passwords.txt), compared case-insensitively.
Hashing: werkzeug's scrypt, a slow memory-hard KDF with a random salt per hash.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 12
MAX_LENGTH = 128
OWN_LIST = Path(__file__).with_name("common_passwords.txt")

# A hash to compare against when the account does not exist, so that a wrong email costs the same
# time as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password-only-for-timing")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    own = (line.strip().lower() for line in OWN_LIST.read_text().splitlines())
    return frozenset(FREQUENCY_LISTS["passwords"]) | {p for p in own if p and not p.startswith("#")}


def problems(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Why this password is refused, in plain words; empty when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return [f"Use at least {MIN_LENGTH} characters."]
    if len(password) > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH} characters."]
    lowered = password.lower()
    if lowered in common_passwords() or len(set(lowered)) <= 2:
        return ["This password is too common. Choose one that other people are unlikely to use."]
    local_part = email.split("@")[0].lower()
    if (local_part and len(local_part) >= 4 and local_part in lowered) or (
        name and name.lower().replace(" ", "") in lowered.replace(" ", "")
    ):
        return ["Do not use your email address or name in your password."]
    return []


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def verify_password(password_hash: str | None, password: str) -> bool:
    return check_password_hash(password_hash or _DUMMY_HASH, password) and password_hash is not None
