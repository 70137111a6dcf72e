"""Sign-in, registration, password management and two-factor sign-in."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import access
from shop.accounts import forms, services, sessions, two_factor
from shop.accounts.email_address import limit_key
from shop.accounts.models import User
from shop.extensions import limiter
from shop.form_errors import apply_errors
from shop.safe_redirect import safe_next

bp = Blueprint("accounts", __name__, url_prefix="/account")

def _form_email() -> str:
    # Rate-limit key per account: the address as sign-in and reset compare it, so every spelling of
    # one account (case, full-width letters, a Unicode domain) counts against one limit.
    return limit_key(request.form.get("email", ""))


def _pending_account() -> str:
    # The account owing its second factor (every browser that passed its password shares the key).
    user = sessions.pending_user()
    return "account:" + user.email if user is not None else "account:?"


def _failed(response: Any) -> bool:
    # Only failed attempts count towards the limit (success redirects).
    return getattr(response, "status_code", 200) != 302




def _after_sign_in(default: str = "accounts.overview") -> Any:
    user = sessions.signed_in_user()
    if user is not None and user.role == "customer":
        from shop.cart.services import merge_session_cart

        merge_session_cart(user)
    return redirect(safe_next(request.values.get("next")) or url_for(default))


def _registration_emailed(response: Any) -> bool:
    # The per-address limit counts the emails a registration sends, not forms sent back to be fixed.
    return bool(g.get("registration_emailed"))


def _public_link(endpoint: str, **values: Any) -> str:
    # Built on PUBLIC_URL, never on the request's Host header (which a client chooses).
    return current_app.config["PUBLIC_URL"].rstrip("/") + url_for(endpoint, **values)


@bp.route("/register", methods=["GET", "POST"])
@access.public
@limiter.limit("10 per hour", methods=["POST"])
@limiter.limit("3 per hour", methods=["POST"], key_func=_form_email, deduct_when=_registration_emailed)
def register() -> Any:
    """The account is made when the emailed link is opened. The answer is the same whether or not
    the address already has an account (its owner is emailed instead), so the form tells nobody who
    is a customer here."""
    if current_user.is_authenticated:
        return redirect(url_for("accounts.overview"))
    form = forms.RegisterForm()
    if form.validate_on_submit():
        try:
            email = services.start_registration(
                email=form.email.data,
                password=form.password.data,
                legal_name=form.legal_name.data,
                date_of_birth=form.date_of_birth.data,
                consent=form.consent.data,
                links=services.RegistrationLinks(
                    confirm=lambda token: _public_link("accounts.confirm_registration", token=token),
                    sign_in=_public_link("accounts.login"),
                    reset=_public_link("accounts.reset_request"),
                ),
            )
        except services.FormErrors as error:
            apply_errors(form, error.errors)
        else:
            g.registration_emailed = True
            return render_template("accounts/register_sent.html", email=email,
                                   hours=services.REGISTRATION_LINK_HOURS)
    return render_template("accounts/register.html", form=form)


def _registration_account() -> str:
    # The per-account limit of the emailed link: the address it registers, keyed as sign-in keys it,
    # so guessing the password on the link counts like guessing it at sign-in.
    pending = services.valid_registration((request.view_args or {}).get("token", ""))
    return limit_key(pending.email) if pending is not None else "registration:?"


@bp.route("/register/<token>", methods=["GET", "POST"])
@access.public
@limiter.limit("20 per hour", methods=["POST"])
@limiter.limit(lambda: current_app.config["SIGN_IN_LIMIT_PER_ADDRESS"], methods=["POST"],
               deduct_when=_failed)
@limiter.limit(lambda: current_app.config["SIGN_IN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_registration_account, deduct_when=_failed)
def confirm_registration(token: str) -> Any:
    """The emailed link: a page asking for the password chosen at registration (a GET changes
    nothing); the right password makes the account and signs it in."""
    pending = services.valid_registration(token)
    if pending is None:
        return render_template("accounts/register_invalid.html"), 404
    form = forms.ConfirmRegistrationForm()
    if form.validate_on_submit():
        try:
            user = services.confirm_registration(token, form.password.data)
        except services.FormErrors as error:
            if "token" in error.errors:
                return render_template("accounts/register_invalid.html"), 404
            apply_errors(form, error.errors)
            return render_template("accounts/register_confirm.html", form=form, email=pending.email)
        services.sign_in(user)
        flash("Welcome! Your account is ready.", "success")
        return _after_sign_in("profile.profile")
    return render_template("accounts/register_confirm.html", form=form, email=pending.email)


@bp.route("/sign-in", methods=["GET", "POST"])
@access.public
@limiter.limit(lambda: current_app.config["SIGN_IN_LIMIT_PER_ADDRESS"], methods=["POST"],
               deduct_when=_failed)
@limiter.limit(lambda: current_app.config["SIGN_IN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_form_email, deduct_when=_failed)
def login() -> Any:
    if current_user.is_authenticated:
        return _after_sign_in()
    form = forms.SignInForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data)
        if user is None:
            # One message for a wrong email and a wrong password alike.
            form.password.errors = ["The email address or password is not correct."]
        else:
            owes_second_factor = services.sign_in(user)
            if owes_second_factor:
                endpoint = "accounts.verify" if user.totp_enabled else "accounts.enrol"
                return redirect(url_for(endpoint, next=safe_next(form.next.data) or ""))
            return _after_sign_in()
    return render_template("accounts/login.html", form=form, demo_accounts=_demo_accounts())


def _demo_accounts() -> list[dict[str, str]]:
    if not current_app.config.get("DEMO_MODE"):
        return []
    from shop.accounts.demo import demo_account_hints

    return demo_account_hints()


@bp.route("/sign-in/verify", methods=["GET", "POST"])
@access.two_factor_pending
@limiter.limit("10 per 5 minutes", methods=["POST"], deduct_when=_failed)
@limiter.limit(lambda: current_app.config["SIGN_IN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_pending_account, deduct_when=_failed)
def verify() -> Any:
    user = sessions.pending_user()
    if user is None or not user.totp_enabled:
        return redirect(url_for("accounts.login"))
    form = forms.SecondFactorForm()
    if form.validate_on_submit():
        if services.complete_second_factor(user, form.code.data):
            return _after_sign_in()
        form.code.errors = ["That code is not correct or was already used. Try the newest code."]
    return render_template("accounts/verify.html", form=form)


@bp.route("/sign-in/enrol", methods=["GET", "POST"])
@access.two_factor_pending
@limiter.limit("10 per 5 minutes", methods=["POST"], deduct_when=_failed)
@limiter.limit(lambda: current_app.config["SIGN_IN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_pending_account, deduct_when=_failed)
def enrol() -> Any:
    """Staff who have not set up two-factor sign-in do it here before anything else."""
    user = sessions.pending_user()
    if user is None or user.totp_enabled:
        return redirect(url_for("accounts.login"))
    return _enrolment(user, template="accounts/enrol.html")


def _enrolment(user: User, template: str) -> Any:
    secret = services.two_factor_setup_secret(user)
    form = forms.EnrolForm()
    if form.validate_on_submit():
        codes = services.enable_two_factor(user, secret, form.code.data)
        if codes is not None:
            return render_template("accounts/recovery_codes.html", codes=codes,
                                   next=safe_next(request.args.get("next")))
        form.code.errors = ["That code does not match. Check the time on your phone and try again."]
    uri = two_factor.provisioning_uri(secret, user.email, current_app.config["PHARMACY_NAME"])
    return render_template(template, form=form, qr=two_factor.qr_svg(uri), secret=secret, user=user)


@bp.post("/sign-out")
@access.signed_in
def logout() -> Any:
    form = forms.SignOutForm()
    if form.validate_on_submit():
        services.sign_out()
        flash("You are signed out.", "success")
    return redirect(url_for("catalog.home"))


@bp.get("")
@access.signed_in
def overview() -> str:
    return render_template("accounts/overview.html")


@bp.route("/password", methods=["GET", "POST"])
@access.signed_in
def change_password() -> Any:
    form = forms.ChangePasswordForm()
    if form.validate_on_submit():
        try:
            services.change_password(current_user, form.current_password.data, form.new_password.data)
        except services.FormErrors as error:
            apply_errors(form, error.errors)
        else:
            flash("Your password is changed. Other devices have been signed out.", "success")
            return redirect(url_for("accounts.overview"))
    return render_template("accounts/change_password.html", form=form)


@bp.route("/reset", methods=["GET", "POST"])
@access.public
@limiter.limit(lambda: current_app.config["RESET_LIMIT_PER_ADDRESS"], methods=["POST"])
@limiter.limit(lambda: current_app.config["RESET_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_form_email)
def reset_request() -> Any:
    form = forms.ResetRequestForm()
    if form.validate_on_submit():
        base = current_app.config["PUBLIC_URL"].rstrip("/")
        services.request_password_reset(
            form.email.data, lambda token: base + url_for("accounts.reset", token=token)
        )
        return render_template("accounts/reset_sent.html", email=form.email.data)
    return render_template("accounts/reset_request.html", form=form)


@bp.route("/reset/<token>", methods=["GET", "POST"])
@access.public
@limiter.limit("20 per hour", methods=["POST"])
def reset(token: str) -> Any:
    link = services.valid_reset(token)
    if link is None:
        return render_template("accounts/reset_invalid.html"), 404
    # An invited person choosing their first password is welcomed, not told it "changed".
    first_password = link.user_id in services.pending_invitations([link.user_id])
    form = forms.ResetPasswordForm()
    if form.validate_on_submit():
        try:
            user = services.reset_password(token, form.password.data)
        except services.FormErrors as error:
            if "token" in error.errors:
                return render_template("accounts/reset_invalid.html"), 404
            apply_errors(form, error.errors)
        else:
            if first_password:
                flash(f"Your password is set. Welcome to {current_app.config['PHARMACY_NAME']}! Sign in "
                      "with your email address and your new password"
                      + ("; you will then set up two-factor sign-in." if user.is_staff else "."), "success")
            else:
                flash("Your password is changed. Sign in with the new one.", "success")
            return redirect(url_for("accounts.login"))
    return render_template("accounts/reset_password.html", form=form, token=token,
                           first_password=first_password, email=link.user.email)


@bp.route("/two-factor", methods=["GET", "POST"])
@access.signed_in
def two_factor_settings() -> Any:
    user: User = current_user._get_current_object()  # type: ignore[attr-defined]
    if not user.totp_enabled:
        return _enrolment(user, template="accounts/two_factor.html")
    return render_template("accounts/two_factor.html", user=user,
                           disable_form=forms.DisableTwoFactorForm())


@bp.post("/two-factor/disable")
@access.signed_in
def disable_two_factor() -> Any:
    form = forms.DisableTwoFactorForm()
    if form.validate_on_submit() and services.disable_two_factor(current_user, form.password.data):
        flash("Two-factor sign-in is off.", "success")
        return redirect(url_for("accounts.overview"))
    flash("Two-factor sign-in stays on: the password was not correct"
          + (", and staff accounts must keep it." if current_user.is_staff else "."), "error")
    return redirect(url_for("accounts.two_factor_settings"))
