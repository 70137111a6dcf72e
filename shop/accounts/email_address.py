"""The one normal form of an email address: what is stored, compared, rate limited and mailed to.

Look-alike spellings of one address must be one account: `a@example.com` typed in full-width
letters, `A@example.com.` and `a@example.com` are the same mailbox, and so are `b@bücher.example`
and `b@xn--bcher-kva.example`.
So the whole text is NFKC-normalised (full-width and compatibility forms become their plain letters),
trimmed, the root dot of a fully-qualified domain dropped, the domain written in its ASCII (IDNA)
form and the local part lower-cased. Lower-casing the local part keeps the shop's long-standing rule
that addresses are unique regardless of case; no mail provider we know of gives `Ann` and `ann`
different mailboxes. No Flask here: migration 0009 normalises stored addresses with this function.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 254  # the column's width and RFC 5321's path limit


def normalise_email(text: str) -> str:
    """The stored form of `text`. :raise ValueError: not an email address (the message says why)."""
    text = unicodedata.normalize("NFKC", text).strip()
    if text.endswith("."):
        text = text[:-1]  # "ann@example.com." names the same domain, fully qualified
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    # Lower-casing can leave a string that NFKC would change again; normalise once more so that the
    # function is idempotent (normalising a stored address gives it back unchanged).
    local = unicodedata.normalize("NFKC", result.local_part.lower())
    address = f"{local}@{result.ascii_domain}"
    if len(address) > MAX_LENGTH:
        raise ValueError(f"The email address is too long ({len(address)} characters; {MAX_LENGTH} at most).")
    return address


def limit_key(text: str) -> str:
    """The per-account rate-limit key for an address typed into a form: its normal form, so every
    spelling of one account shares one counter. Text that is no address gets a key of its own (it
    matches no account, and the per-address limit still applies)."""
    try:
        return "account:" + normalise_email(text[:MAX_LENGTH * 2])
    except ValueError:
        return "account:?" + unicodedata.normalize("NFKC", text).strip().casefold()[:MAX_LENGTH]
