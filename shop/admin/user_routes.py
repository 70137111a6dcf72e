"""Admin user management: staff accounts, roles, disabling."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")
