"""A thin wrapper over the official Stripe client, for card payments with PaymentIntents.

Money is integer cents (Stripe's minor unit for USD), passed through unchanged. Each gateway owns its
own `stripe.StripeClient`: nothing here sets `stripe.api_key` or any other module-level setting, so
several gateways (real Stripe, localstripe, tests) can live in one process.

Every call that changes money carries an idempotency key derived from the order, so a retried request
(ours or the Stripe library's own network retry) cannot authorise, capture or refund twice. Stripe keeps
a key for 24 hours and answers a repeat with the first answer. localstripe, the fake Stripe used in
development and tests, ignores the Idempotency-Key header: there a repeat creates a second object.

localstripe (1.15) differs from Stripe in ways this module works around or that callers must know:
- It answers 500 "Not implemented" to a confirm that carries `payment_method`, so `confirm` sets the
  card on the intent first and then confirms (two calls, also valid on Stripe).
- Its PaymentIntents have no `amount_capturable` / `amount_received`; `Intent` derives them from the
  status when they are missing (a partial capture there shows as a full capture plus a refund of the
  remainder, so `amount_received` reads as the full amount).
- It rejects parameters it does not know (`description`, `cancellation_reason`, refund `reason`, ...)
  with 400 "Unexpected ...", so only the parameters below are sent.
- It never declines `pm_card_visa_chargeDeclined` (that card only fails when attached to a customer);
  `pm_card_chargeCustomerFail` is the card that it declines on confirm.
- An intent whose card was declined stays stuck there (a second confirm answers 400). Authorising again
  works on both: Stripe answers the repeated idempotency key with the same intent, which may be
  confirmed again; localstripe ignores the key and makes a fresh intent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import stripe

from shop.numbers import INT_MAX

STRIPE_JS_URL = "https://js.stripe.com/v3/"

# Sentences shown to the customer when a card is declined, by Stripe's decline_code or error code.
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds. Please use a different card.",
    "expired_card": "Your card has expired. Please use a different card.",
    "incorrect_cvc": "The card's security code is incorrect. Please check it and try again.",
    "invalid_cvc": "The card's security code is incorrect. Please check it and try again.",
    "incorrect_number": "The card number is incorrect. Please check it and try again.",
    "invalid_number": "The card number is incorrect. Please check it and try again.",
    "invalid_expiry_month": "The card's expiry date is incorrect. Please check it and try again.",
    "invalid_expiry_year": "The card's expiry date is incorrect. Please check it and try again.",
    "processing_error": "Your bank could not process the card just now. Please try again in a moment.",
    "authentication_required": "Your bank asked you to confirm this payment. Please try again and "
    "complete your bank's check.",
    "payment_intent_authentication_failure": "Your bank's check of this payment did not succeed. "
    "Please try again or use a different card.",
}
DEFAULT_DECLINE_MESSAGE = "Your card was declined. Please use a different card or contact your bank."

_T = TypeVar("_T")


class GatewayError(Exception):
    """Stripe was unreachable, or answered with an error we did not expect."""

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code


class PaymentDeclined(GatewayError):
    """The card was declined. `.message` is a plain sentence that may be shown to the customer."""

    def __init__(
        self,
        message: str = DEFAULT_DECLINE_MESSAGE,
        *,
        code: str | None = None,
        decline_code: str | None = None,
        intent_id: str | None = None,
    ) -> None:
        super().__init__(message, http_status=402, code=code)
        self.decline_code = decline_code
        self.intent_id = intent_id


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    currency: str
    # What the browser needs to confirm the intent: kept out of repr() so it does not end up in logs.
    client_secret: str | None = field(repr=False)
    capture_method: str
    metadata: dict[str, str] = field(hash=False)
    # Why a cancelled intent was cancelled: Stripe's own reasons ("automatic" for an authorisation
    # that lapsed) or the one a cancel request gave; None when the request gave none (ours never do).
    cancellation_reason: str | None = None


@dataclass(frozen=True)
class Refund:
    id: str
    amount: int
    status: str


class PaymentGateway:
    def __init__(
        self,
        secret_key: str,
        api_base: str | None = None,
        publishable_key: str = "",
        *,
        timeout_seconds: float = 30.0,
        max_network_retries: int = 2,
    ) -> None:
        """`api_base` None talks to Stripe itself; otherwise e.g. "http://127.0.0.1:8420" (localstripe)."""
        if not secret_key:
            raise ValueError("A Stripe secret key is required")
        if api_base is not None:
            api_base = api_base.rstrip("/")
            if not api_base.startswith(("http://", "https://")):
                raise ValueError(f"STRIPE_API_BASE must be an http(s) address, not {api_base!r}")
            if secret_key.startswith(("sk_live_", "rk_live_")):
                raise ValueError("A live Stripe key is only ever sent to Stripe itself, not to " + api_base)
        self.api_base = api_base
        self.publishable_key = publishable_key
        client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )
        # `client.v1` exists from stripe 12.5; the older accessors on the client itself are deprecated.
        self._stripe = getattr(client, "v1", client)

    # Browser side --------------------------------------------------------------------------------

    @property
    def stripe_js_url(self) -> str:
        """Where the payment page loads Stripe.js from (localstripe serves a stand-in)."""
        return f"{self.api_base}/js.stripe.com/v3/" if self.api_base else STRIPE_JS_URL

    def content_security_policy(self) -> dict[str, tuple[str, ...]]:
        """Sources the payment page's Content-Security-Policy must allow, by directive."""
        if self.api_base:
            # The stand-in is a plain script that draws inputs in the page and calls the fake API
            # with fetch(): no frames.
            return {"script-src": (self.api_base,), "connect-src": (self.api_base,), "frame-src": ()}
        return {
            "script-src": ("https://js.stripe.com", "https://*.js.stripe.com"),
            "connect-src": ("https://api.stripe.com",),
            "frame-src": ("https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"),
        }

    # Server side ---------------------------------------------------------------------------------

    def create_authorisation(
        self, *, order_id: int, order_number: str, amount_cents: int, currency: str, attempt: int = 1
    ) -> Intent:
        """A PaymentIntent that only authorises the card; the money moves at `capture`.

        `attempt` counts the order's intents: after a declined card the old intent is cancelled and
        the next attempt needs its own idempotency key, or Stripe would answer with the cancelled one."""
        _check_cents(amount_cents)
        params: dict[str, Any] = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "capture_method": "manual",
            # Cards only: they support a separate capture, and no method needs a redirect.
            "payment_method_types": ["card"],
            "metadata": {"order_id": str(order_id), "order_number": order_number},
        }
        options = {"idempotency_key": f"order-{order_id}-authorise-{amount_cents}-{attempt}"}
        return _intent(self._call("authorise the payment", self._stripe.payment_intents.create,
                                  params, options))

    def retrieve(self, intent_id: str) -> Intent:
        return _intent(self._call("look up the payment", self._stripe.payment_intents.retrieve, intent_id))

    def confirm(self, intent_id: str, payment_method: str) -> Intent:
        """Confirm on the server with a payment method id (tests, and a fallback without JavaScript).

        Raises PaymentDeclined when the card is declined. A card that needs the bank's check comes
        back with status "requires_action": the browser completes it with Stripe.js.
        """
        intents = self._stripe.payment_intents
        self._call("attach the card", intents.update, intent_id, {"payment_method": payment_method})
        confirmed = self._call("confirm the payment", intents.confirm, intent_id)
        intent = _intent(confirmed)
        if intent.status == "requires_payment_method":  # a decline reported in the answer
            error = _plain(_plain(confirmed).get("last_payment_error"))
            raise _declined(error.get("code"), error.get("decline_code"), intent.id)
        return intent

    def capture(self, intent_id: str, *, order_id: int, amount_cents: int | None = None) -> Intent:
        """Take the authorised money: all of it, or `amount_cents` of it (the rest is released)."""
        params: dict[str, Any] = {}
        if amount_cents is not None:
            _check_cents(amount_cents)
            params["amount_to_capture"] = amount_cents
        options = {"idempotency_key": f"order-{order_id}-capture"}
        return _intent(self._call("capture the payment", self._stripe.payment_intents.capture,
                                  intent_id, params, options))

    def cancel(self, intent_id: str, *, order_id: int) -> Intent:
        """Release an authorisation that was not captured."""
        # An order may have several intents (one per declined attempt): the key names the intent.
        options = {"idempotency_key": f"order-{order_id}-cancel-{intent_id}"}
        return _intent(self._call("cancel the payment", self._stripe.payment_intents.cancel,
                                  intent_id, None, options))

    def refund(self, intent_id: str, *, order_id: int, amount_cents: int, sequence: int) -> Refund:
        """Give back `amount_cents` of a captured payment; `sequence` numbers an order's refunds."""
        _check_cents(amount_cents)
        params = {
            "payment_intent": intent_id,
            "amount": amount_cents,
            "metadata": {"order_id": str(order_id), "sequence": str(sequence)},
        }
        options = {"idempotency_key": f"order-{order_id}-refund-{sequence}"}
        data = _plain(self._call("refund the payment", self._stripe.refunds.create, params, options))
        return Refund(id=str(data["id"]), amount=int(data["amount"]), status=str(data["status"]))

    def _call(self, action: str, method: Callable[..., _T], *args: Any) -> _T:
        try:
            return method(*args)
        except stripe.CardError as error:
            details = _plain(error.error)
            intent = _plain(details.get("payment_intent"))
            raise _declined(error.code, details.get("decline_code"), intent.get("id")) from error
        except stripe.StripeError as error:
            raise GatewayError(
                f"Stripe could not {action}: {error.user_message or error.__class__.__name__}",
                http_status=error.http_status,
                code=error.code,
            ) from error


def _check_cents(amount_cents: int) -> None:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise ValueError(f"An amount is a positive whole number of cents, not {amount_cents!r}")


def _declined(code: str | None, decline_code: str | None, intent_id: str | None) -> PaymentDeclined:
    message = DECLINE_MESSAGES.get(decline_code or "") or DECLINE_MESSAGES.get(code or "")
    return PaymentDeclined(
        message or DEFAULT_DECLINE_MESSAGE, code=code, decline_code=decline_code, intent_id=intent_id
    )


def _plain(value: Any) -> Mapping[str, Any]:
    """A Stripe object (or nothing, or an id) as a mapping of its fields."""
    if value is None or isinstance(value, str):
        return {}
    if isinstance(value, Mapping):
        return value
    return value.to_dict()


def _intent(obj: Any) -> Intent:
    data = _plain(obj)
    status, amount = str(data["status"]), int(data["amount"])
    # localstripe leaves these two out; Stripe always sends them.
    capturable = data.get("amount_capturable")
    if capturable is None:
        capturable = amount if status == "requires_capture" else 0
    received = data.get("amount_received")
    if received is None:
        received = amount if status == "succeeded" else 0
    metadata = _plain(data.get("metadata"))
    return Intent(
        id=str(data["id"]),
        status=status,
        amount=amount,
        amount_capturable=int(capturable),
        amount_received=int(received),
        currency=str(data["currency"]),
        client_secret=data.get("client_secret"),
        capture_method=str(data.get("capture_method") or "automatic"),
        metadata={str(key): str(value) for key, value in metadata.items()},
        cancellation_reason=data.get("cancellation_reason") or None,
    )


# Webhooks ----------------------------------------------------------------------------------------


class InvalidWebhook(Exception):
    """The request is not a webhook from Stripe: bad, tampered or stale signature, or not an event."""


class MalformedEvent(InvalidWebhook):
    """A correctly signed event that is not the shape Stripe documents (e.g. `data.object` a list,
    `metadata` a string, an amount that is not a whole number of cents): it is refused before
    anything is read or written, so it changes nothing."""

    def __init__(self, message: str, event: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.event_id, self.event_type = event.get("id"), event.get("type")  # for the log


# Stripe's ids and event types, bounded to the columns that hold them (String(80)). The patterns
# also keep NUL and other characters PostgreSQL refuses out of every query.
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,76}")
_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,80}")
_INTENT_ID = re.compile(r"pi_[A-Za-z0-9_]{1,77}")
_CURRENCY = re.compile(r"[a-z]{3}")
INTENT_STATUSES = frozenset({"requires_payment_method", "requires_confirmation", "requires_action",
                             "processing", "requires_capture", "canceled", "succeeded"})


def verify_webhook(
    payload: bytes, signature_header: str, secret: str, tolerance_seconds: int = 300
) -> dict:
    """Check the Stripe-Signature header against the RAW request body; return the event as a dict.

    The body must be the bytes as received (request.get_data()), never re-serialised JSON: the
    signature covers the exact bytes.
    """
    if tolerance_seconds <= 0:
        raise ValueError("tolerance_seconds must be positive (0 would accept any old signature)")
    if not secret:
        raise InvalidWebhook("No webhook signing secret is configured")
    try:
        stripe.Webhook.construct_event(payload, signature_header, secret, tolerance=tolerance_seconds)
        event = json.loads(payload)
    # ValueError: not UTF-8 or not JSON; AttributeError/TypeError: JSON that is not an object.
    except (stripe.SignatureVerificationError, ValueError, AttributeError, TypeError) as error:
        raise InvalidWebhook(str(error) or error.__class__.__name__) from error
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
    ):
        raise InvalidWebhook("The payload is not a Stripe event")
    if not _EVENT_ID.fullmatch(event["id"]) or not _EVENT_TYPE.fullmatch(event["type"]):
        raise MalformedEvent("The event's id or type is not one Stripe makes", event)
    if not isinstance(event["data"].get("object"), dict):
        raise MalformedEvent("The event's data.object is not an object", event)
    return event


def _is_cents(value: Any) -> bool:
    """A whole, non-negative number of cents that a database integer holds (JSON true and 1.0 are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT_MAX


def webhook_intent(event: Mapping[str, Any]) -> Intent | None:
    """The PaymentIntent of a verified `payment_intent.*` event, checked field by field (None for
    other events, which the shop does not act on).

    :raise MalformedEvent: the object is not a PaymentIntent as Stripe sends it.
    """
    if not event["type"].startswith("payment_intent."):
        return None
    data = event["data"]["object"]
    metadata = data.get("metadata", {})
    if not (
        data.get("object") == "payment_intent"
        and isinstance(data.get("id"), str) and _INTENT_ID.fullmatch(data["id"])
        and isinstance(data.get("status"), str) and data["status"] in INTENT_STATUSES
        and isinstance(data.get("currency"), str) and _CURRENCY.fullmatch(data["currency"])
        and isinstance(data.get("capture_method") or "", str)
        and isinstance(data.get("cancellation_reason") or "", str)
        and len(data.get("cancellation_reason") or "") <= 40
    ):
        raise MalformedEvent("The event's object is not a payment intent", event)
    if not isinstance(metadata, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()):
        raise MalformedEvent("The payment intent's metadata is not a set of texts", event)
    # localstripe leaves the last two out; when present they are amounts like the first.
    optional = (data.get("amount_capturable"), data.get("amount_received"))
    if not _is_cents(data.get("amount")) or not all(v is None or _is_cents(v) for v in optional):
        raise MalformedEvent("The payment intent's amounts are not whole numbers of cents", event)
    # Never the client secret: nothing from a webhook goes to a browser.
    return _intent({**data, "client_secret": None})


# Flask -------------------------------------------------------------------------------------------


def gateway_for_app(app: Any) -> PaymentGateway:
    """The app's gateway, made once from STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and STRIPE_API_BASE
    (None: Stripe itself)."""
    gateway = app.extensions.get("payment_gateway")
    if gateway is None:
        secret_key = app.config.get("STRIPE_SECRET_KEY")
        if not secret_key:
            raise RuntimeError("STRIPE_SECRET_KEY is not set: card payments cannot be taken")
        gateway = PaymentGateway(
            secret_key,
            api_base=app.config.get("STRIPE_API_BASE") or None,
            publishable_key=app.config.get("STRIPE_PUBLISHABLE_KEY") or "",
        )
        gateway = app.extensions.setdefault("payment_gateway", gateway)
    return gateway
