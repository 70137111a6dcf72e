"""The one rule for a range of days typed into a query string (`?from=...&to=...`).

A day is an ISO date ("2026-03-01"); anything else is no filter. The range includes its last
day, so a query wants the moments before the start of the day after: there is none after
9999-12-31 (`date.max`), which then bounds nothing rather than overflowing.
"""

from __future__ import annotations

import datetime as dt


def parse_date(text: object) -> dt.date | None:
    """The day `text` spells as an ISO date, or None."""
    if not isinstance(text, str):
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


def range_start(date_from: dt.date | None) -> dt.datetime | None:
    """The first moment of the range that starts on `date_from` (inclusive), or None for no bound."""
    return dt.datetime.combine(date_from, dt.time.min) if date_from else None


def range_end(date_to: dt.date | None) -> dt.datetime | None:
    """The moment the range that ends on `date_to` (inclusive) stops: the start of the day after,
    an exclusive bound; None for no bound (no `date_to`, or it is the last day there is)."""
    if date_to is None or date_to >= dt.date.max:
        return None
    return dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min)
