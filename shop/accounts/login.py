"""Flask-Login wiring: the current user comes from the server-side session, never from a user id
stored in the cookie."""

from __future__ import annotations

from flask import Flask, Request

from shop.accounts import sessions
from shop.accounts.models import User
from shop.extensions import login_manager


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.session_protection = None  # our own session rows do this job

    @login_manager.request_loader
    def load_from_session(_request: Request) -> User | None:
        return sessions.signed_in_user()

    @app.before_request
    def load_session() -> None:
        # Validate (and maybe expire) the session before the view changes anything, so the
        # bookkeeping commit never carries half of a view's work.
        sessions.current()

    @app.context_processor
    def session_state() -> dict[str, object]:
        return {"pending_user": sessions.pending_user()}
