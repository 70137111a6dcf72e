"""Rules every request meets before a view reads it."""

from __future__ import annotations

from itertools import chain

from flask import Flask, abort, request


def _carries_nul() -> bool:
    texts = chain(
        (str(value) for value in (request.view_args or {}).values()),
        chain.from_iterable((key, *values) for key, values in request.args.lists()),
        chain.from_iterable((key, *values) for key, values in request.form.lists())
        if request.method == "POST" else (),
    )
    return any("\x00" in text for text in texts)


def init_app(app: Flask) -> None:
    @app.before_request
    def refuse_nul() -> None:
        """NUL is in no text a person types, and PostgreSQL refuses it in a text value (the query
        fails): a path, query or form carrying one is malformed (400) before any view sees it."""
        if _carries_nul():
            abort(400)
