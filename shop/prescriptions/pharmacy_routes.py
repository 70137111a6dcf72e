"""The pharmacist's review queue and review page."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import selectinload
from wtforms.fields.choices import SelectChoice

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.catalog.models import Product
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.numbers import parse_id
from shop.prescriptions import forms, services
from shop.prescriptions.models import Prescription

bp = Blueprint("pharmacy", __name__, url_prefix="/pharmacy")


_me = access.me


@bp.get("/queue")
@access.pharmacist
def queue() -> str:
    page = services.queue(request.args.get("after"))
    return render_template("pharmacy/queue.html", page=page, now=services.utcnow())


@bp.post("/prescriptions/<int:prescription_id>/claim")
@access.pharmacist
def claim(prescription_id: int) -> Any:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if services.claim(prescription_id, _me()):
        return redirect(url_for("pharmacy.review", prescription_id=prescription_id))
    flash("Another pharmacist has claimed this prescription, or it has been decided.", "error")
    return redirect(url_for("pharmacy.queue"))


@bp.post("/prescriptions/<int:prescription_id>/release")
@access.pharmacist
def release(prescription_id: int) -> Any:
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if services.release(prescription_id, _me()):
        flash(f"Prescription #{prescription_id} is back in the queue.", "success")
    return redirect(url_for("pharmacy.queue"))


def _review_form(prescription: Prescription, formdata: Any = None) -> forms.ReviewForm:
    form = forms.ReviewForm(formdata=formdata) if formdata is not None else forms.ReviewForm(
        formdata=None,
        patient_name=prescription.customer.legal_name,
        patient_date_of_birth=prescription.customer.date_of_birth,
        product_id=str(prescription.requested_product_id or ""),
        refills=0,
    )
    products = [p for p in db.session.scalars(
        sa.select(Product).where(Product.active, Product.prescription_only).order_by(Product.name)
        .options(selectinload(Product.strengths)))]  # one query for every drug's strengths
    form.product_id.choices = [SelectChoice("", "Choose…")] + [
        SelectChoice(str(p.id), p.name + (" (controlled)" if p.controlled_substance else ""))
        for p in products
    ]
    # Only the chosen drug's strengths; with no drug chosen, every strength grouped under its drug.
    # The script (static/js/review-strengths.js) redoes this in the page when the drug changes, from
    # data-strengths; the approval itself refuses a strength of another drug (services._validate).
    chosen = [p for p in products if str(p.id) == form.product_id.data]
    form.strength_id.choices = [SelectChoice("", "Choose…")] + [
        SelectChoice(str(s.id), f"{s.label} {s.dosage_form}", optgroup=p.name)
        for p in (chosen or products) for s in p.active_strengths
    ]
    form.strength_id.render_kw = {"data-strengths": json.dumps(
        [[str(p.id), p.name, [[str(s.id), f"{s.label} {s.dosage_form}"] for s in p.active_strengths]]
         for p in products])}
    return form


def _transcription(form: forms.ReviewForm) -> services.Transcription:
    return services.Transcription(
        patient_name=form.patient_name.data or "",
        patient_date_of_birth=form.patient_date_of_birth.data,
        product_id=parse_id(form.product_id.data),
        strength_id=parse_id(form.strength_id.data),
        quantity_authorised=form.quantity_authorised.data,
        refills=form.refills.data,
        units_per_day=form.units_per_day.data,
        directions=form.directions.data or "",
        dispense_as_written=bool(form.dispense_as_written.data),
        prescriber_name=form.prescriber_name.data or "",
        prescriber_address=form.prescriber_address.data or "",
        prescriber_phone=form.prescriber_phone.data or "",
        prescriber_npi=form.prescriber_npi.data or "",
        date_written=form.date_written.data,
        expires_on=form.expires_on.data,
        verification_method=form.verification_method.data or "",
        verification_contact=form.verification_contact.data or "",
        override_reason=form.override_reason.data or "",
    )


def _render_review(prescription: Prescription, form: forms.ReviewForm, reject_form: forms.RejectForm,
                   status: int = 200) -> Any:
    warnings = services.review_warnings(prescription, _transcription(form))
    return render_template(
        "pharmacy/review.html", prescription=prescription, form=form, reject_form=reject_form,
        warnings=warnings, holds_claim=services.holds_claim(prescription, _me()),
        today=dt.date.today(),
    ), status


@bp.get("/prescriptions/<int:prescription_id>")
@access.pharmacist
def review(prescription_id: int) -> Any:
    """:raise 404: no such prescription."""
    prescription = services.for_review(prescription_id, _me())
    if prescription is None:
        abort(404)
    return _render_review(prescription, _review_form(prescription), forms.RejectForm(formdata=None))


@bp.post("/prescriptions/<int:prescription_id>/approve")
@access.pharmacist
def approve(prescription_id: int) -> Any:
    """:raise 404: no such prescription."""
    prescription = services.for_review(prescription_id, _me())
    if prescription is None:
        abort(404)
    form = _review_form(prescription, request.form)
    if request.form.get("check"):
        # Re-run the safety checks on what is typed so far; nothing is saved.
        return _render_review(prescription, form, forms.RejectForm(formdata=None))
    if form.validate_on_submit():
        try:
            services.approve(prescription_id, _me(), _transcription(form))
        except services.ReviewError as error:
            apply_errors(form, error.errors)
        else:
            flash(f"Prescription #{prescription_id} is approved; the customer is notified.", "success")
            return redirect(url_for("pharmacy.queue"))
    return _render_review(prescription, form, forms.RejectForm(formdata=None), 422)


@bp.post("/prescriptions/<int:prescription_id>/reject")
@access.pharmacist
def reject(prescription_id: int) -> Any:
    """:raise 404: no such prescription."""
    prescription = services.for_review(prescription_id, _me())
    if prescription is None:
        abort(404)
    reject_form = forms.RejectForm()
    if reject_form.validate_on_submit():
        try:
            services.reject(prescription_id, _me(), reject_form.reason.data, reject_form.note.data or "")
        except services.ReviewError as error:
            apply_errors(reject_form, error.errors)
        else:
            flash(f"Prescription #{prescription_id} is rejected; the customer is notified.", "success")
            return redirect(url_for("pharmacy.queue"))
    return _render_review(prescription, _review_form(prescription), reject_form, 422)


