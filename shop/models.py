"""Imports every model module so that the metadata (migrations, tests) sees all tables."""

from shop import audit as audit_models
from shop.accounts import models as account_models
from shop.cart import models as cart_models
from shop.catalog import models as catalog_models
from shop.catalog import price_models
from shop.inventory import models as inventory_models
from shop.notifications import models as notification_models
from shop.orders import models as order_models
from shop.prescriptions import models as prescription_models

__all__ = [
    "account_models",
    "audit_models",
    "cart_models",
    "catalog_models",
    "inventory_models",
    "notification_models",
    "order_models",
    "prescription_models",
    "price_models",
]
