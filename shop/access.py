"""Access rules. Every view declares one; a test walks the URL map and fails on any that does not.

Only `public` exists so far; the accounts work adds signed-in, customer, pharmacist and admin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

ACCESS_ATTRIBUTE = "access_rule"


def public(view: F) -> F:
    """Anyone, signed in or not, may use this view."""
    setattr(view, ACCESS_ATTRIBUTE, "public")
    return view


def access_rule(view: Callable[..., object]) -> str | None:
    return getattr(view, ACCESS_ATTRIBUTE, None)
