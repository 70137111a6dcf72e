"""The payment gateway against the session's localstripe (started in tests/conftest.py)."""

from __future__ import annotations

import pytest

from shop.payments.gateway import PaymentGateway
from tests.stripe_server import PUBLISHABLE_KEY, SECRET_KEY


@pytest.fixture
def gateway(localstripe: str) -> PaymentGateway:
    return PaymentGateway(SECRET_KEY, api_base=localstripe, publishable_key=PUBLISHABLE_KEY)
