"""Admin stock pages: receipts, adjustments, ledger, low stock, expiring lots, CSV."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_stock", __name__, url_prefix="/admin/stock")
