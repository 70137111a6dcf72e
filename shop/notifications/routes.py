"""The local mailbox: in development, read what the shop would have emailed."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from shop.access import public
from shop.notifications.services import recent_messages

bp = Blueprint("notifications", __name__)


@bp.get("/dev/mailbox")
@public
def mailbox() -> str:
    """:raise 404: outside development (DEMO_MODE off), the page does not exist."""
    if not current_app.config.get("DEV_MAILBOX"):
        abort(404)
    return render_template("notifications/mailbox.html", messages=recent_messages())
