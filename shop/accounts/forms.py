"""Account forms. WTForms parses and checks shape; services apply the rules and report per field."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TelField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from shop.accounts.passwords import MAX_LENGTH

NEW_PASSWORD_HELP = "At least 12 characters. A few unrelated words make a strong, memorable password."  # noqa: S105 - help text


class RegisterForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired("Enter your email address."),
                                                    Length(max=254)])
    legal_name = StringField("Full legal name", validators=[DataRequired("Enter your full legal name."),
                                                            Length(max=160)],
                             description="As it appears on your prescriptions.")
    date_of_birth = DateField("Date of birth", validators=[InputRequired("Enter your date of birth.")])
    password = PasswordField("Password", validators=[DataRequired("Choose a password."),
                                                     Length(max=MAX_LENGTH)],
                             description=NEW_PASSWORD_HELP)
    consent = BooleanField("I have read the notice of privacy practices",
                           validators=[DataRequired("Please confirm you have read the notice.")])
    submit = SubmitField("Create account")


class ConfirmRegistrationForm(FlaskForm):
    """The emailed registration link: the password chosen at registration proves that whoever opens
    the link is whoever registered (not someone who pre-registered another person's address)."""

    password = PasswordField("Password", validators=[DataRequired("Enter the password you chose."),
                                                     Length(max=MAX_LENGTH)])
    submit = SubmitField("Create my account")


class SignInForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired("Enter your email address."),
                                                    Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."),
                                                     Length(max=MAX_LENGTH)])
    next = HiddenField()
    submit = SubmitField("Sign in")


class SecondFactorForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired("Enter the code."), Length(max=40)],
                       description="The 6-digit code from your authenticator app, or a recovery code.")
    submit = SubmitField("Verify")


class EnrolForm(FlaskForm):
    code = StringField("Code from your app", validators=[DataRequired("Enter the 6-digit code."),
                                                         Length(max=12)])
    submit = SubmitField("Turn on two-factor sign-in")


class DisableTwoFactorForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired("Enter your password.")])
    submit = SubmitField("Turn off two-factor sign-in")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password",
                                     validators=[DataRequired("Enter your current password.")])
    new_password = PasswordField("New password", validators=[DataRequired("Choose a new password."),
                                                             Length(max=MAX_LENGTH)],
                                 description=NEW_PASSWORD_HELP)
    submit = SubmitField("Change password")


class ResetRequestForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired("Enter your email address."),
                                                    Length(max=254)])
    submit = SubmitField("Email me a reset link")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired("Choose a new password."),
                                                         Length(max=MAX_LENGTH)],
                             description=NEW_PASSWORD_HELP)
    submit = SubmitField("Set new password")


class SignOutForm(FlaskForm):
    submit = SubmitField("Sign out")


class ProfileForm(FlaskForm):
    legal_name = StringField("Full legal name", validators=[DataRequired("Enter your full legal name."),
                                                            Length(max=160)])
    date_of_birth = DateField("Date of birth", validators=[InputRequired("Enter your date of birth.")])
    phone = TelField("Phone", validators=[Optional(), Length(max=40)],
                     description="So our pharmacist can call you about your prescriptions.")
    consent = BooleanField("I have read the notice of privacy practices")
    submit = SubmitField("Save profile")


class AddressForm(FlaskForm):
    recipient = StringField("Recipient", validators=[Length(max=160)])
    line1 = StringField("Street address", validators=[Length(max=160)])
    line2 = StringField("Apartment, suite (optional)", validators=[Length(max=160)])
    city = StringField("City", validators=[Length(max=100)])
    state = StringField("State", validators=[Length(max=40)], description="Two letters, e.g. OR.")
    postal_code = StringField("ZIP code", validators=[Length(max=20)])
    country = SelectField("Country", choices=[SelectChoice("US", "United States")], default="US")
    phone = TelField("Phone for the courier (optional)", validators=[Length(max=40)])
    make_default = BooleanField("Use as my default shipping address")
    submit = SubmitField("Save address")


class ProfileEntryForm(FlaskForm):
    text = StringField("Add", validators=[Length(max=200)])
    submit = SubmitField("Add")


class ConfirmForm(FlaskForm):
    """A button-only form: the CSRF token is its whole content."""

    submit = SubmitField("Confirm")
