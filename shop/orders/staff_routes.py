"""Staff order pages: pharmacist release, shipping, delivery, cancelling, refunds."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("staff_orders", __name__, url_prefix="/staff/orders")
