"""Security headers on every response, and no caching of pages that show personal data."""

from __future__ import annotations

from flask import Flask, request
from flask.wrappers import Response

from shop.accounts import sessions

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ]
)
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
