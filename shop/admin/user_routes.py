"""Admin user management: staff accounts, roles, disabling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from shop import access
from shop.accounts.models import ROLES, User
from shop.accounts.services import FormErrors
from shop.admin import users
from shop.audit import utcnow
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.numbers import parse_id

bp = Blueprint("admin_users", __name__, url_prefix="/admin/users")


class StaffAccountForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired("Enter their email address."),
                                                    Length(max=254)],
                       description="The link to choose a password is sent here.")
    legal_name = StringField("Full legal name", validators=[DataRequired("Enter their full legal name."),
                                                            Length(max=160)])
    # The service checks the role, with a plain message (WTForms' would be "Not a valid choice").
    role = SelectField("Role", choices=[SelectChoice("pharmacist", "Pharmacist"),
                                        SelectChoice("admin", "Admin")],
                       default="pharmacist", validate_choice=False,
                       description="Pharmacists review prescriptions; admins manage the shop and its users.")
    submit = SubmitField("Create account and email the link")


class RoleForm(FlaskForm):
    """Sent by one of the role buttons on the account page (each button carries its role)."""

    role = StringField("Role", validators=[DataRequired("Choose a role.")])


class StatusForm(FlaskForm):
    """A button-only form (disable or enable): the CSRF token is its whole content."""


_me = access.me


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _password_link(token: str) -> str:
    # Built on PUBLIC_URL, never on the request's Host header (which a client chooses).
    return current_app.config["PUBLIC_URL"].rstrip("/") + url_for("accounts.reset", token=token)


@bp.get("")
@access.admin
def index() -> str:
    """Accounts, newest first: search by email or name, filter by role and status; keyset pages."""
    filters = {
        "q": request.args.get("q", "").strip()[:254],
        "role": request.args.get("role", "") if request.args.get("role") in ROLES else "",
        "status": request.args.get("status", "") if request.args.get("status") in users.STATUSES else "",
    }
    page = users.search(filters["q"], filters["role"], filters["status"],
                        before=parse_id(request.args.get("before")))  # bad: the first page
    return render_template("admin/users/index.html", page=page, filters=filters, roles=ROLES,
                           statuses=users.STATUSES, now=utcnow(),
                           invitations=users.pending_invitations([user.id for user in page.users]))


def _render_detail(user: User, *, role_form: RoleForm | None = None, status_error: str | None = None,
                   invitation_error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template(
        "admin/users/detail.html", user=user, role_form=role_form or RoleForm(formdata=None),
        status_error=status_error, is_self=user.id == _me().id,
        active_admins=users.active_admin_count(), events=users.recent_events(user),
        invitation_expires=users.invitation_expiry(user), invitation_error=invitation_error, now=utcnow(),
    ), status


@bp.get("/<int:user_id>")
@access.admin
def detail(user_id: int) -> Any:
    """Account fields, role, status and recent account events; never the customer's health data."""
    return _render_detail(_user_or_404(user_id))


@bp.route("/new", methods=["GET", "POST"])
@access.admin
def new() -> Any:
    form = StaffAccountForm()
    if form.validate_on_submit():
        try:
            user = users.create_staff_account(email=form.email.data, legal_name=form.legal_name.data,
                                              role=form.role.data, actor=_me(), link_for=_password_link)
        except FormErrors as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{user.role.capitalize()} account created for {user.email}. We emailed them a link to "
                  f"choose their password (valid {users.invitation_hours()} hours); they set up two-factor "
                  "sign-in when they first sign in.", "success")
            return redirect(url_for("admin_users.detail", user_id=user.id))
    status = 422 if form.is_submitted() else 200
    return render_template("admin/users/new.html", form=form,
                           hours=users.invitation_hours()), status


@bp.post("/<int:user_id>/role")
@access.admin
def set_role(user_id: int) -> Any:
    user = _user_or_404(user_id)
    form = RoleForm()
    if form.validate_on_submit():
        try:
            changed = users.change_role(user, form.role.data, actor=_me())
        except FormErrors as error:
            apply_errors(form, error.errors)
        else:
            article = "an" if user.role == "admin" else "a"
            if changed:
                flash(f"{user.email} is now {article} {user.role}; their sessions have ended.", "success")
            else:
                flash(f"{user.email} is already {article} {user.role}: nothing changed.", "info")
            return redirect(url_for("admin_users.detail", user_id=user.id))
    return _render_detail(user, role_form=form, status=422)


def _set_status(user_id: int, change: Callable[..., bool], done: str) -> Any:
    user = _user_or_404(user_id)
    form = StatusForm()
    if not form.validate_on_submit():
        return _render_detail(user, status_error="The form expired. Please press the button again.",
                              status=422)
    try:
        if change(user, actor=_me()):
            flash(done.format(email=user.email), "success")
    except FormErrors as error:
        return _render_detail(user, status_error=error.errors["active"], status=422)
    return redirect(url_for("admin_users.detail", user_id=user.id))


@bp.post("/<int:user_id>/disable")
@access.admin
def disable(user_id: int) -> Any:
    return _set_status(user_id, users.disable,
                       "{email} is disabled: signed out everywhere and unable to sign in.")


@bp.post("/<int:user_id>/enable")
@access.admin
def enable(user_id: int) -> Any:
    return _set_status(user_id, users.enable, "{email} is enabled and can sign in again.")


@bp.post("/<int:user_id>/invitation")
@access.admin
def resend_invitation(user_id: int) -> Any:
    """A new invitation link for someone who has not chosen their password yet; the old one dies."""
    user = _user_or_404(user_id)
    if not StatusForm().validate_on_submit():
        return _render_detail(user, invitation_error="The form expired. Please press the button again.",
                              status=422)
    try:
        hours = users.resend_invitation(user, actor=_me(), link_for=_password_link)
    except FormErrors as error:
        return _render_detail(user, invitation_error=error.errors["invitation"], status=422)
    flash(f"We emailed {user.email} a new link to choose their password (valid {hours} hours). "
          "The link sent before no longer works.", "success")
    return redirect(url_for("admin_users.detail", user_id=user.id))
