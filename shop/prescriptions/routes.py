"""Customer pages: upload prescriptions, follow their status, view the documents."""

from __future__ import annotations

from html import escape
from typing import Any

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from wtforms.fields.choices import SelectChoice

from shop import access
from shop.catalog.models import Product
from shop.extensions import db
from shop.numbers import parse_id, parse_int
from shop.prescriptions import forms, services
from shop.prescriptions.storage import StorageError, TamperedFile, store_for_app
from shop.prescriptions.validation import PdfTooDemanding, UploadRefused, render_pdf_page

bp = Blueprint("prescriptions", __name__, url_prefix="/prescriptions")


_me = access.me

# Pages an upload can be started from, so the prescription's page offers the way back. Only these
# names are accepted, never a URL, so the link cannot be pointed elsewhere.
BACK_LINKS = {"cart": ("cart.show", "Back to your cart")}


def _back() -> str | None:
    back = request.args.get("back")
    return back if back in BACK_LINKS else None


def _product_choices() -> list[SelectChoice]:
    products = db.session.scalars(
        sa.select(Product).where(Product.active, Product.prescription_only).order_by(Product.name)
    )
    return [SelectChoice("", "Not sure / other")] + [SelectChoice(str(p.id), p.name) for p in products]


@bp.get("")
@access.customer
def index() -> str:
    return render_template("prescriptions/index.html",
                           prescriptions=services.customer_prescriptions(_me()))


@bp.route("/new", methods=["GET", "POST"])
@access.customer
def upload() -> Any:
    form = forms.UploadForm()
    form.product_id.choices = _product_choices()
    product = parse_id(request.args.get("product"))
    if request.method == "GET" and product is not None:
        form.product_id.data = str(product)
    if form.validate_on_submit():
        uploads = [services.Upload(f.read(), f.filename or "") for f in request.files.getlist("files")]
        try:
            prescription = services.upload(
                _me(), uploads,
                requested_product_id=parse_id(form.product_id.data),
                note=form.note.data or "", store=store_for_app(current_app),
            )
        except UploadRefused as error:
            form.files.errors = [*form.files.errors, error.message]
        else:
            flash("Thank you: your prescription is uploaded. A pharmacist will check it and we will "
                  "email you the result.", "success")
            return redirect(url_for("prescriptions.detail", prescription_id=prescription.id, back=_back()))
    return render_template("prescriptions/upload.html", form=form, back=BACK_LINKS.get(_back() or ""))


@bp.get("/<int:prescription_id>")
@access.customer
def detail(prescription_id: int) -> str:
    """:raise 404: not one of this customer's prescriptions."""
    prescription = services.owned_prescription(_me(), prescription_id)
    if prescription is None:
        abort(404)
    return render_template("prescriptions/detail.html", prescription=prescription,
                           back=BACK_LINKS.get(_back() or ""))


@bp.get("/<int:prescription_id>/files/<int:file_id>")
@access.signed_in
def file(prescription_id: int, file_id: int) -> Response:
    """The document, to its owner and to pharmacists only; every view is audited.

    `?page=N` shows page N of a PDF as an image; `?download=1` offers it as a download.
    :raise 404: no such file, or the viewer may not see it.
    """
    viewer = _me()
    record = services.file_for_viewer(viewer, prescription_id, file_id)
    if record is None:
        abort(404)
    download = request.args.get("download") == "1"
    page = parse_int(request.args.get("page"), minimum=0)  # a page index; anything else: the file
    if page is None and "page" in request.args:
        abort(404)
    try:
        data = services.read_file(viewer, record, store_for_app(current_app),
                                  purpose="downloaded" if download else "viewed")
    except TamperedFile:
        current_app.logger.error("prescription file %s failed its integrity check", record.id)
        abort(500)
    except StorageError:
        current_app.logger.error("prescription file %s could not be read from storage", record.id)
        abort(500)
    content_type, extension = record.content_type, record.extension
    if page is not None and record.content_type == "application/pdf":
        try:
            data = render_pdf_page(data, page)
        except PdfTooDemanding as stopped:
            # In place of the page on the review page: a picture saying so, not a broken image.
            return _document_response(_page_not_drawn_svg(stopped.reason), "image/svg+xml", status=503)
        except UploadRefused:
            abort(404)
        content_type, extension = "image/png", "png"
    disposition = "attachment" if download else "inline"
    name = f"prescription-{prescription_id}-{record.position + 1}.{extension}"
    response = _document_response(data, content_type)
    response.headers["Content-Disposition"] = f'{disposition}; filename="{name}"'
    return response


def _document_response(data: bytes, content_type: str, status: int = 200) -> Response:
    response = Response(data, status=status, mimetype=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cache-Control"] = "no-store"
    return response


_PAGE_NOT_DRAWN = {
    "time": "This page could not be drawn in time.",
    "memory": "This page is too large or complex to draw.",
}


def _page_not_drawn_svg(reason: str) -> bytes:
    """A picture with the reason and what to do, shown where the page would be.

    Browsers show an image's body whatever the status, so the 503 still displays. Fixed text only.
    """
    lines = [_PAGE_NOT_DRAWN.get(reason, _PAGE_NOT_DRAWN["memory"]),
             "Download the file to read it, or ask the customer for a photo."]
    text = "".join(
        f'<text x="40" y="{110 + 50 * i}" font-size="{26 if i == 0 else 20}">{escape(line)}</text>'
        for i, line in enumerate(lines)
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="800" height="260" viewBox="0 0 800 260" '
        f'role="img" aria-label="{escape(lines[0])}" font-family="sans-serif" fill="#222">'
        '<rect x="1" y="1" width="798" height="258" fill="#f6f6f6" stroke="#888" stroke-width="2"/>'
        f"{text}</svg>"
    ).encode()
