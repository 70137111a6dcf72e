"""The Stripe webhook endpoint."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, request

from shop import access
from shop.extensions import csrf
from shop.payments import services
from shop.payments.gateway import InvalidWebhook, MalformedEvent, verify_webhook, webhook_intent

bp = Blueprint("payments", __name__)
log = logging.getLogger(__name__)


@bp.post("/stripe/webhook")
@access.public
@csrf.exempt  # authenticated by Stripe's signature over the raw body instead
def webhook() -> tuple[str, int]:
    """:raise 400: missing, tampered or stale signature, or a signed event of the wrong shape.

    A malformed event is refused whole and not stored: the stored events are those applied, and a
    400 lets Stripe show the failing delivery (and retry it) instead of taking it as handled."""
    try:
        event = verify_webhook(request.get_data(), request.headers.get("Stripe-Signature", ""),
                               current_app.config["STRIPE_WEBHOOK_SECRET"])
        intent = webhook_intent(event)
    except MalformedEvent as error:
        # The id and type only (cut short, repr'd): the rest may hold customer data.
        log.warning("Stripe webhook refused: signed but malformed: %s (event %.100r, type %.100r)",
                    error, error.event_id, error.event_type)
        abort(400)
    except InvalidWebhook as error:
        log.info("Stripe webhook refused: %s", error)
        abort(400)
    services.handle_event(event, intent)
    return "", 200
