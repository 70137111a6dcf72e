"""Prescription forms: the customer's upload, and the pharmacist's transcription and decision."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    DateField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from shop.numbers import DecimalNumberField, IntField
from shop.prescriptions.models import REJECTION_REASONS, VERIFICATION_METHODS


class UploadForm(FlaskForm):
    files = MultipleFileField(
        "Prescription file(s)",
        description="A photo (JPEG or PNG) or a PDF, up to 10 MB each. Several pages of one "
                    "prescription can be chosen together (up to 5).",
    )
    product_id = SelectField("For which medicine? (optional)", coerce=str, validate_choice=True)
    note = TextAreaField("Note for our pharmacist (optional)", validators=[Length(max=2000)])
    submit = SubmitField("Upload prescription")


def _choices(mapping: dict[str, str], prompt: str) -> list[SelectChoice]:
    return [SelectChoice("", prompt)] + [SelectChoice(key, label) for key, label in mapping.items()]


class ReviewForm(FlaskForm):
    patient_name = StringField("Patient name", validators=[Length(max=160)])
    patient_date_of_birth = DateField("Patient date of birth", validators=[Optional()])
    product_id = SelectField("Drug", coerce=str)
    # Its choices are the chosen drug's strengths (pharmacy_routes), so a strength of another drug, or
    # no strength at all, is refused here in the words the approval itself uses.
    strength_id = SelectField("Strength and form", coerce=str,
                              invalid_choice_message="Choose a strength of the chosen drug.",
                              description="The chosen drug's strengths. If the list does not follow a "
                                          "change of drug, press “Check warnings without saving”.")
    quantity_authorised = IntField("Quantity per fill (units)", validators=[
        Optional(), NumberRange(min=1, max=10_000)], message="Enter the quantity as a whole number.")
    refills = IntField("Refills", default=0, validators=[Optional(), NumberRange(min=0, max=12)],
                       message="Enter the refills as a whole number.")
    units_per_day = DecimalNumberField("Units a day", places=None, validators=[Optional()],
                                       description="How many tablets or capsules a day the directions "
                                                   "mean; used to check the dose.")
    directions = TextAreaField("Directions", validators=[Length(max=1000)])
    dispense_as_written = BooleanField("Dispense as written (no substitution)")
    prescriber_name = StringField("Prescriber name", validators=[Length(max=160)])
    prescriber_address = StringField("Prescriber address", validators=[Length(max=300)])
    prescriber_phone = StringField("Prescriber phone", validators=[Length(max=40)])
    prescriber_npi = StringField("Prescriber NPI", validators=[Length(max=10)],
                                 description="10 digits; the last is a check digit.")
    date_written = DateField("Date written", validators=[Optional()])
    expires_on = DateField("Valid until", validators=[Optional()],
                           description="Leave empty for the standard validity after the date written.")
    verification_method = SelectField(
        "Verified with the prescriber by", choices=_choices(VERIFICATION_METHODS, "Choose…"))
    verification_contact = StringField("Person spoken to", validators=[Length(max=160)],
                                       description="Required for a phone verification.")
    override_reason = TextAreaField(
        "Why it is safe to approve despite a severe warning", validators=[Length(max=2000)])
    submit = SubmitField("Approve prescription")


class RejectForm(FlaskForm):
    reason = SelectField("Reason", choices=_choices(REJECTION_REASONS, "Choose a reason…"),
                         validators=[InputRequired()])
    note = TextAreaField("Note for the customer", validators=[Length(max=2000)],
                         description="What was wrong and what they can do next.")
    submit = SubmitField("Reject prescription")
