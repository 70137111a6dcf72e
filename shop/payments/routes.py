"""The Stripe webhook endpoint."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, request

from shop import access
from shop.extensions import csrf
from shop.payments import services
from shop.payments.gateway import InvalidWebhook, verify_webhook

bp = Blueprint("payments", __name__)


@bp.post("/stripe/webhook")
@access.public
@csrf.exempt  # authenticated by Stripe's signature over the raw body instead
def webhook() -> tuple[str, int]:
    """:raise 400: missing, tampered or stale signature."""
    try:
        event = verify_webhook(request.get_data(), request.headers.get("Stripe-Signature", ""),
                               current_app.config["STRIPE_WEBHOOK_SECRET"])
    except InvalidWebhook:
        abort(400)
    services.handle_event(event)
    return "", 200
