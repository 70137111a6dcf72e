"""Admin price editor: package tables with preview, history and scheduled changes."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_prices", __name__, url_prefix="/admin/prices")
