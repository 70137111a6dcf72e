"""Template filters and the pharmacy details every page shows."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from shop import money
from shop.markdown import render_markdown

PHARMACY_KEYS = (
    "PHARMACY_NAME",
    "PHARMACY_ADDRESS",
    "PHARMACY_PHONE",
    "PHARMACY_EMAIL",
    "PHARMACY_LICENCE",
    "PHARMACIST_IN_CHARGE",
    "PHARMACY_HOURS",
)


def _money(cents: int, currency: str | None = None) -> str:
    return money.format_cents(cents, currency or current_app.config["CURRENCY"])


def init_app(app: Flask) -> None:
    app.add_template_filter(_money, "money")
    app.add_template_filter(render_markdown, "markdown")

    @app.context_processor
    def pharmacy_details() -> dict[str, Any]:
        config = current_app.config
        pharmacy = {key.removeprefix("PHARMACY_").lower(): config[key] for key in PHARMACY_KEYS}
        return {"pharmacy": pharmacy, "demo_mode": config.get("DEMO_MODE", False)}
