"""Access rules. Every view declares exactly one; a test walks the URL map and fails on any view
without one, and an access-matrix test checks each rule against every role.

- public: anyone.
- signed_in: any signed-in account (visitors are sent to sign in).
- customer / pharmacist / admin: signed in with that role; other roles get 403.
- shopper: visitors and customers (staff get 403).
- two_factor_pending: a browser that has passed the password step and owes the second factor.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

F = TypeVar("F", bound=Callable[..., Any])

ACCESS_ATTRIBUTE = "access_rule"


def _declare(view: F, rule: str) -> F:
    setattr(view, ACCESS_ATTRIBUTE, rule)
    return view


def public(view: F) -> F:
    """Anyone, signed in or not, may use this view."""
    return _declare(view, "public")


def me() -> Any:
    """The signed-in user itself (not Flask-Login's proxy), to hand to services from a view that
    declares a signed-in rule."""
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _sign_in_redirect() -> Any:
    flash("Please sign in to continue.", "info")
    target = request.full_path if request.method == "GET" else request.path
    return redirect(url_for("accounts.login", next=target.rstrip("?")))


def _requires(rule: str, roles: tuple[str, ...] | None) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return _sign_in_redirect()
            if roles is not None and current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return _declare(wrapped, rule)  # type: ignore[arg-type]

    return decorator


signed_in = _requires("signed_in", None)
customer = _requires("customer", ("customer",))
pharmacist = _requires("pharmacist", ("pharmacist",))
admin = _requires("admin", ("admin",))
# Pharmacists and admins: the day-to-day order work (shipping, delivery, cancelling).
staff = _requires("staff", ("pharmacist", "admin"))


def shopper(view: F) -> F:
    """Visitors and customers (the cart); staff accounts do not shop and get 403."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user.is_authenticated and current_user.role != "customer":
            abort(403)
        return view(*args, **kwargs)

    return _declare(wrapped, "shopper")  # type: ignore[arg-type]


def two_factor_pending(view: F) -> F:
    """Only for a browser between the password step and the second factor; the view checks it."""
    return _declare(view, "two_factor_pending")


def access_rule(view: Callable[..., object]) -> str | None:
    return getattr(view, ACCESS_ATTRIBUTE, None)
