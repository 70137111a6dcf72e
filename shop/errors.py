"""Error pages in the shop's layout."""

from __future__ import annotations

from flask import Flask, render_template
from werkzeug.exceptions import HTTPException, InternalServerError

from shop.extensions import db

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Please go back and try again."),
    403: ("Not allowed", "You do not have permission to open this page."),
    404: ("Page not found", "We could not find that page. It may have moved or been retired."),
    405: ("Not allowed", "That action is not available on this page."),
    413: (
        "File too large",
        "The file you sent is larger than we accept. Please send a smaller file.",
    ),
    429: ("Too many attempts", "Please wait a moment before trying again."),
    500: (
        "Something went wrong",
        "An error on our side stopped this page. Nothing you submitted was charged; please try "
        "again, or call the pharmacy if it keeps happening.",
    ),
}


def render_error(code: int, description: str | None = None) -> tuple[str, int]:
    title, message = MESSAGES.get(code, ("Error", "Something went wrong."))
    return render_template("errors/error.html", code=code, title=title, message=message), code


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        return render_error(error.code or 500)

    @app.errorhandler(InternalServerError)
    def internal_error(error: InternalServerError) -> tuple[str, int]:
        # Whatever the failed request half-did must not leak into the next one on this session.
        db.session.rollback()
        return render_error(500)
