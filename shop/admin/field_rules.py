"""The rules the catalog and monograph editors apply to typed fields: trimming, required text with a
length limit, slugs, and decimal amounts. Each check adds {field: message} to the caller's errors."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_AMOUNT = Decimal("9999999.999")  # Numeric(10, 3)


def slugify(text: str, max_length: int) -> str:
    """"Thiamine (vitamin B1)" -> "thiamine-vitamin-b1"; "1.5 mg" -> "1-5-mg"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def clean(text: str | None) -> str:
    """Trimmed, inner runs of whitespace as one space (for one-line fields)."""
    return " ".join((text or "").split())


def clean_text(text: str | None) -> str:
    """Trimmed, with Windows line ends as plain ones (for text areas)."""
    return (text or "").replace("\r\n", "\n").strip()


def require(errors: dict[str, str], name: str, value: str, max_length: int, what: str) -> None:
    if not value:
        errors[name] = f"Enter {what}."
    elif len(value) > max_length:
        errors[name] = f"At most {max_length} characters."


def check_slug(errors: dict[str, str], typed: str, source: str, max_length: int) -> str:
    """The typed slug, or one made from `source` when none is typed."""
    slug = typed.strip().lower() or slugify(source, max_length)
    if not slug:
        if source:
            errors["slug"] = "Enter a slug: lower-case letters, digits and hyphens."
    elif len(slug) > max_length:
        errors["slug"] = f"At most {max_length} characters."
    elif not SLUG_RE.match(slug):
        errors["slug"] = "Use lower-case letters, digits and single hyphens only (e.g. low-dose-2)."
    return slug


def check_amount(errors: dict[str, str], name: str, value: Decimal, *, not_positive: str,
                 too_large: str) -> None:
    """A positive amount that fits a Numeric(10, 3) column."""
    if not value.is_finite() or value <= 0:
        errors[name] = not_positive
    elif value.as_tuple().exponent < -3:  # type: ignore[operator]
        errors[name] = "At most three decimals."
    elif value > MAX_AMOUNT:
        errors[name] = too_large
