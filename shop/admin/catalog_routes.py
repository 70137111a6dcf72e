"""Admin catalog and monograph editing."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_catalog", __name__, url_prefix="/admin/catalog")
