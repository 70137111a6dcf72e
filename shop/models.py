"""Imports every model module so that the metadata (migrations, tests) sees all tables."""

from shop.catalog import models as catalog_models

__all__ = ["catalog_models"]
