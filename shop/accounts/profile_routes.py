"""The patient profile: personal details, shipping addresses, allergies, medications, conditions.

Objects are always looked up through their owner, so another customer's id answers 404."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from shop import access
from shop.accounts import forms, services
from shop.form_errors import apply_errors
from shop.safe_redirect import safe_next

bp = Blueprint("profile", __name__, url_prefix="/account")


_me = access.me


def _entry_forms() -> dict[str, forms.ProfileEntryForm]:
    return {kind: forms.ProfileEntryForm(prefix=kind) for kind in services.PROFILE_ENTRY_LABELS}


def _render_profile(form: forms.ProfileForm, entry_forms: dict[str, forms.ProfileEntryForm]) -> str:
    return render_template("accounts/profile.html", form=form, entry_forms=entry_forms,
                           confirm=forms.ConfirmForm(), labels=services.PROFILE_ENTRY_LABELS)


@bp.route("/profile", methods=["GET", "POST"])
@access.customer
def profile() -> Any:
    user = _me()
    form = forms.ProfileForm(
        obj=None if request.method == "POST" else user,
        consent=user.privacy_consent_at is not None,
    )
    if form.validate_on_submit():
        try:
            services.update_profile(
                user,
                legal_name=form.legal_name.data,
                date_of_birth=form.date_of_birth.data,
                phone=form.phone.data or "",
                consent=form.consent.data,
            )
        except services.FormErrors as error:
            apply_errors(form, error.errors)
        else:
            flash("Your profile is saved.", "success")
            return redirect(url_for("profile.profile"))
    return _render_profile(form, _entry_forms())


@bp.post("/health/<kind>")
@access.customer
def add_health_entry(kind: str) -> Any:
    """:raise 404: not one of allergy, medication, condition."""
    if kind not in services.PROFILE_ENTRY_LABELS:
        abort(404)
    entry_forms = _entry_forms()
    form = entry_forms[kind]
    if form.validate_on_submit():
        try:
            services.add_profile_entry(_me(), kind, form.text.data or "")
        except services.FormErrors as error:
            form.text.errors = list(error.errors.values())
        else:
            flash(f"Added to your {services.PROFILE_ENTRY_LABELS[kind]} list.", "success")
            return redirect(url_for("profile.profile", _anchor=f"{kind}-list"))
    user = _me()
    # formdata=None: the details form shows what is saved, not this (other) form's post.
    details = forms.ProfileForm(formdata=None, obj=user, consent=user.privacy_consent_at is not None)
    return _render_profile(details, entry_forms), 422


@bp.post("/health/<int:entry_id>/delete")
@access.customer
def remove_health_entry(entry_id: int) -> Any:
    """:raise 404: no such entry of this customer."""
    entry = services.owned_profile_entry(_me(), entry_id)
    if entry is None:
        abort(404)
    if forms.ConfirmForm().validate_on_submit():
        kind = entry.kind
        services.remove_profile_entry(_me(), entry)
        flash("Removed.", "success")
        return redirect(url_for("profile.profile", _anchor=f"{kind}-list"))
    abort(400)


@bp.get("/addresses")
@access.customer
def addresses() -> str:
    return render_template("accounts/addresses.html", confirm=forms.ConfirmForm())


@bp.route("/addresses/new", methods=["GET", "POST"])
@access.customer
def new_address() -> Any:
    user = _me()
    back = safe_next(request.args.get("next"))  # the page that sent the customer here
    form = forms.AddressForm(recipient=user.legal_name if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            address = services.save_address(user, form.data, make_default=form.make_default.data)
        except services.FormErrors as error:
            apply_errors(form, error.errors)
        else:
            flash("Address added.", "success")
            if back:  # e.g. checkout, which then has the new address chosen
                return redirect(f"{back}{'&' if '?' in back else '?'}address={address.id}")
            return redirect(url_for("profile.addresses"))
    return render_template("accounts/address_form.html", form=form, address=None, back=back)


@bp.route("/addresses/<int:address_id>", methods=["GET", "POST"])
@access.customer
def edit_address(address_id: int) -> Any:
    """:raise 404: no such address of this customer."""
    user = _me()
    address = services.owned_address(user, address_id)
    if address is None:
        abort(404)
    form = forms.AddressForm(obj=address if request.method == "GET" else None,
                             make_default=address.is_default)
    if form.validate_on_submit():
        try:
            services.save_address(user, form.data, address=address, make_default=form.make_default.data)
        except services.FormErrors as error:
            apply_errors(form, error.errors)
        else:
            flash("Address saved.", "success")
            return redirect(url_for("profile.addresses"))
    return render_template("accounts/address_form.html", form=form, address=address)


def _confirmed_address(user: Any, address_id: int) -> Any:
    """The customer's own address for a confirmed button press. :raise 404: not theirs;
    :raise 400: no valid CSRF token."""
    address = services.owned_address(user, address_id)
    if address is None:
        abort(404)
    if not forms.ConfirmForm().validate_on_submit():
        abort(400)
    return address


@bp.post("/addresses/<int:address_id>/default")
@access.customer
def make_default_address(address_id: int) -> Any:
    """:raise 404: no such address of this customer."""
    user = _me()
    services.set_default_address(user, _confirmed_address(user, address_id))
    flash("Default shipping address changed.", "success")
    return redirect(url_for("profile.addresses"))


@bp.post("/addresses/<int:address_id>/delete")
@access.customer
def delete_address(address_id: int) -> Any:
    """:raise 404: no such address of this customer."""
    user = _me()
    services.delete_address(user, _confirmed_address(user, address_id))
    flash("Address removed.", "success")
    return redirect(url_for("profile.addresses"))
