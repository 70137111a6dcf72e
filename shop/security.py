"""Security headers on every response, and no caching of pages that show personal data."""

from __future__ import annotations

from flask import Flask, request
from flask.wrappers import Response

from shop.accounts import sessions

DIRECTIVES: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    "frame-src": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
}


def content_security_policy(extra: dict[str, tuple[str, ...]] | None = None) -> str:
    """The policy, with `extra` sources allowed per directive (the payment page adds Stripe's)."""
    directives = dict(DIRECTIVES)
    for name, sources in (extra or {}).items():
        if sources:
            base = tuple(s for s in directives.get(name, ("'self'",)) if s != "'none'")
            directives[name] = base + tuple(sources)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


CONTENT_SECURITY_POLICY = content_security_policy()
# Pages under these paths show or take personal data even before anyone is signed in.
PRIVATE_PREFIXES = ("/account", "/admin", "/pharmacy", "/dev/")


def init_app(app: Flask) -> None:
    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(self)"
        )
        if app.config.get("HSTS"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if sessions.current() is not None or request.path.startswith(PRIVATE_PREFIXES):
            headers["Cache-Control"] = "no-store"
            headers["Pragma"] = "no-cache"
        return response
