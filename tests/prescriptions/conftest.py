"""Prescription fixtures: document files made in code, and uploaded prescriptions."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask import Flask
from PIL import Image

from shop.accounts.models import User
from shop.extensions import db


def png_bytes(text_colour: str = "black", size: tuple[int, int] = (400, 300)) -> bytes:
    image = Image.new("RGB", size, "white")
    for x in range(40, 360):
        image.putpixel((x, 150), (0, 0, 0) if text_colour == "black" else (200, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def upload_prescription(app: Flask, users: dict[str, int]) -> Callable[..., int]:
    """Upload a one-page prescription for a customer through the service; returns its id."""
    from shop.prescriptions import services
    from shop.prescriptions.storage import store_for_app

    def upload(customer: str = "customer", product_slug: str | None = "naltrexone") -> int:
        with app.app_context():
            from shop.catalog.models import Product

            product = db.session.query(Product).filter_by(slug=product_slug).first() if product_slug else None
            prescription = services.upload(
                db.session.get(User, users[customer]),
                [services.Upload(png_bytes(), "scan.png")],
                requested_product_id=product.id if product else None,
                note="", store=store_for_app(app),
            )
            return prescription.id

    return upload
