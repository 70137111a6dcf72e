"""Uploading through the customer's page, and who may see the stored documents."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.audit import AuditEvent
from shop.extensions import db
from shop.prescriptions.models import Prescription, PrescriptionFile
from shop.prescriptions.storage import store_for_app
from tests.conftest import csrf_token
from tests.prescriptions.conftest import png_bytes


def stored_files(app: Flask) -> set[Path]:
    root = Path(app.config.get("PRESCRIPTION_STORAGE_PATH") or Path(app.instance_path) / "prescriptions")
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def post_upload(client: FlaskClient, files: list[tuple[bytes, str]], **fields: str):
    data = {"csrf_token": csrf_token(client, "/prescriptions/new"), "note": "", "product_id": "", **fields}
    data["files"] = [(io.BytesIO(content), name) for content, name in files]
    return client.post("/prescriptions/new", data=data, content_type="multipart/form-data")


def test_customer_uploads_a_prescription(app: Flask, signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("customer")
    before = stored_files(app)
    with app.app_context():
        from shop.catalog.models import Product

        naltrexone = db.session.scalars(sa.select(Product.id).where(Product.slug == "naltrexone")).one()
    page_one, page_two = png_bytes(), png_bytes("red")
    response = post_upload(client, [(page_one, "front.png"), (page_two, "back.png")],
                           product_id=str(naltrexone), note="Please call before 5 pm")
    assert response.status_code == 302
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Waiting for review" in detail and "Page 2" in detail
    with app.app_context():
        prescription = db.session.scalars(sa.select(Prescription)).one()
        assert prescription.customer_note == "Please call before 5 pm"
        assert [f.content_type for f in prescription.files] == ["image/png", "image/png"]
        assert [f.original_name for f in prescription.files] == ["front.png", "back.png"]
        keys = [f.storage_key for f in prescription.files]
    new_files = stored_files(app) - before
    assert len(new_files) == 2
    for path in new_files:
        raw = path.read_bytes()
        assert b"PNG" not in raw[:16] and page_one not in raw  # encrypted at rest
        assert not any(name in path.name for name in ("front", "back", ".png"))
    # The owner can view it again, verified and decrypted.
    first = client.get(f"/prescriptions/{prescription.id}/files/{prescription.files[0].id}")
    assert first.status_code == 200 and first.mimetype == "image/png"
    assert first.headers["Content-Security-Policy"] == "sandbox"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Content-Disposition"].startswith("inline;")
    assert first.data.startswith(b"\x89PNG")
    download = client.get(f"/prescriptions/{prescription.id}/files/{prescription.files[0].id}?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    with app.app_context():
        actions = list(db.session.scalars(sa.select(AuditEvent.action)))
    assert "prescription.uploaded" in actions
    assert "prescription.file_viewed" in actions and "prescription.file_downloaded" in actions
    assert keys


def test_a_refused_file_stores_nothing(app: Flask, signed_in: Callable[[str], FlaskClient]) -> None:
    client = signed_in("customer")
    before = stored_files(app)
    response = post_upload(client, [(png_bytes(), "good.png"), (b"<html><script>x</script></html>", "evil.png")])
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "evil.png:" in html and "not a JPEG, PNG or PDF" in html
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Prescription)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PrescriptionFile)) == 0
    assert stored_files(app) == before


def test_no_file_gets_a_clear_message(signed_in: Callable[[str], FlaskClient]) -> None:
    response = post_upload(signed_in("customer"), [])
    assert "Choose a photo or PDF" in response.get_data(as_text=True)


def test_other_customers_get_404_and_pharmacists_can_view(
    app: Flask, signed_in: Callable[[str], FlaskClient], upload_prescription: Callable[..., int]
) -> None:
    pid = upload_prescription()
    with app.app_context():
        file_id = db.session.scalars(sa.select(PrescriptionFile.id)).one()
    other = signed_in("other_customer")
    assert other.get(f"/prescriptions/{pid}").status_code == 404
    assert other.get(f"/prescriptions/{pid}/files/{file_id}").status_code == 404
    assert other.get(f"/prescriptions/{pid + 1000}/files/{file_id + 1000}").status_code == 404
    assert "#" + str(pid) not in other.get("/prescriptions").get_data(as_text=True)
    assert signed_in("admin").get(f"/prescriptions/{pid}/files/{file_id}").status_code == 404
    assert signed_in("pharmacist").get(f"/prescriptions/{pid}/files/{file_id}").status_code == 200
    assert app.test_client().get(f"/prescriptions/{pid}/files/{file_id}").status_code == 302


def test_a_tampered_stored_file_is_detected(
    app: Flask, signed_in: Callable[[str], FlaskClient], upload_prescription: Callable[..., int]
) -> None:
    pid = upload_prescription()
    with app.app_context():
        record = db.session.scalars(sa.select(PrescriptionFile)).one()
        path = store_for_app(app).storage.path_for(record.storage_key)
        file_id = record.id
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0x01
    path.write_bytes(bytes(raw))
    response = signed_in("customer").get(f"/prescriptions/{pid}/files/{file_id}")
    assert response.status_code == 500
    assert b"\x89PNG" not in response.data


def test_an_upload_started_from_the_cart_offers_the_way_back(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    import html
    import re

    from shop.catalog.models import Package, Strength

    client = signed_in("customer")
    with app.app_context():
        pid = db.session.scalars(sa.select(Package.id).join(Strength).where(
            Strength.slug == "50-mg", Package.units == 90)).one()
    client.post("/cart/add", data={"package_id": pid, "csrf_token": csrf_token(client, "/cart")})
    cart = client.get("/cart").get_data(as_text=True)
    link = html.unescape(re.search(r'<a href="([^"]+)">Upload a prescription for this item</a>', cart).group(1))
    form_page = client.get(link).get_data(as_text=True)
    assert '<a href="/cart">Back to your cart</a>' in form_page

    data = {"csrf_token": csrf_token(client, link), "note": "", "product_id": "",
            "files": [(io.BytesIO(png_bytes()), "scan.png")]}
    response = client.post(link, data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert '<a class="button-link" href="/cart">Back to your cart</a>' in detail
    # Not offered when the upload did not come from the cart, and never to another address.
    plain = response.headers["Location"].split("?")[0]
    assert "Back to your cart" not in client.get(plain).get_data(as_text=True)
    assert "Back to" not in client.get(plain + "?back=https://evil.example/").get_data(as_text=True)
