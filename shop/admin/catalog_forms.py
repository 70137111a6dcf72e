"""Forms of the admin catalog and monograph editors. They only parse: the rules (required fields,
ranges, uniqueness) live in catalog_edit, monograph_edit and monograph_rows, whose per-field refusals
the routes show beside these fields. A form that saves over a versioned record carries the version it
was read at."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from shop.admin import catalog_edit as edit
from shop.admin import monograph_edit as monographs
from shop.admin import monograph_rows
from shop.catalog.models import EVIDENCE_LEVELS, SEVERITIES
from shop.numbers import DecimalNumberField, IntField


def plain_decimal(value: Decimal | None) -> Decimal | None:
    """A stored Numeric as a form shows it: 25.000 -> 25 and 100.000 -> 100 (not 1E+2)."""
    return None if value is None else Decimal(format(value.normalize(), "f"))


SLUG_HELP = "Lower-case letters, digits and hyphens; leave empty to make it from the {source}."
MARKDOWN_HELP = "Headings start at ###. Raw HTML is shown as text, never run."


class ProductForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=120)],
                       description="As customers see it, e.g. Naltrexone.")
    slug = StringField("Slug (web address)", validators=[Length(max=80)],
                       description=SLUG_HELP.format(source="name") + " Changing it changes the product's "
                                                                      "public address.")
    generic_name = StringField("Generic name", validators=[Length(max=120)],
                               description="e.g. naltrexone hydrochloride")
    short_description = TextAreaField("Short description", validators=[Length(max=edit.MAX_DESCRIPTION)],
                                      description="One or two sentences for the product list.")
    monograph_id = SelectField("Monograph", coerce=str)
    prescription_only = BooleanField("Prescription only",
                                     description="Customers need an approved prescription to check out.")
    controlled_substance = BooleanField(
        "Controlled substance",
        description="A controlled substance can never be bought from this shop: it may be listed for "
                    "information, but it cannot be added to a cart and no cart holding it can check out. "
                    "Controlled substances are always prescription-only.")
    submit = SubmitField("Save product")


class ProductEditForm(ProductForm):
    version = HiddenField()


class AliasForm(FlaskForm):
    kind = SelectField("Kind", choices=[SelectChoice(k, v) for k, v in edit.ALIAS_KINDS.items()])
    name = StringField("Brand name or synonym", validators=[Length(max=120)])


class StrengthForm(FlaskForm):
    label = StringField("Label", validators=[Length(max=40)], description="As customers see it, e.g. 50 mg.")
    slug = StringField("Slug (web address)", validators=[Length(max=40)],
                       description=SLUG_HELP.format(source="label"))
    amount = DecimalNumberField("Amount in one unit", places=None, validators=[Optional()],
                                description="e.g. 50 or 1.5; the pharmacist's dose check uses it with the "
                                            "unit.")
    unit = SelectField("Unit", choices=[SelectChoice(u, u) for u in edit.UNITS], default="mg")
    dosage_form = StringField("Dosage form", validators=[Length(max=80)],
                              description="e.g. film-coated tablet, compounded capsule")
    position = IntField("Order on the product page", validators=[Optional()], minimum=0,
                        message="Enter the place as a whole number, 0 or more.",
                            description="0 comes first; leave empty to keep it (or, new, to put it last).")
    submit = SubmitField("Save strength")


class NewStrengthForm(StrengthForm):
    units = IntField("First package: tablets or capsules", validators=[Optional()],
                     message="Enter the tablets or capsules as a whole number.",
                         description="Add more packages, and change prices, in the price editor.")
    price = StringField("First package: price", validators=[Length(max=20)], description="e.g. 214.24")
    submit = SubmitField("Add strength")


# Monographs ----------------------------------------------------------------------------------------


class DetailsForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=120)], description="e.g. Naltrexone")
    drug_name = StringField("Drug name", validators=[Length(max=120)],
                            description="The substance, e.g. naltrexone hydrochloride.")
    drug_class = StringField("Drug class", validators=[Length(max=120)],
                             description="e.g. Opioid receptor antagonist")
    summary = TextAreaField("Summary", validators=[Length(max=monographs.MAX_SUMMARY)], render_kw={"rows": 4},
                            description="Two or three plain sentences at the top of the public page.")
    version = HiddenField()


class ReviewForm(FlaskForm):
    last_reviewed = DateField("Last reviewed on", validators=[Optional()])
    reviewed_by = StringField("Reviewed by", validators=[Length(max=120)],
                              description="Name and qualification, e.g. Dana Reyes, PharmD.")
    version = HiddenField()
    submit = SubmitField("Save review")


class NewMonographForm(DetailsForm):
    slug = StringField("Slug (web address)", validators=[Length(max=80)],
                       description=SLUG_HELP.format(source="title") + " It cannot change later.")
    last_reviewed = ReviewForm.last_reviewed
    reviewed_by = ReviewForm.reviewed_by
    version = None  # a new record has no version to check


class SectionForm(FlaskForm):
    title = StringField("Title", validators=[Length(max=120)])
    body = TextAreaField("Text (Markdown)", validators=[Length(max=monographs.MAX_SECTION)],
                         render_kw={"rows": 12}, description=MARKDOWN_HELP)
    version = HiddenField()


class SafetyForm(FlaskForm):
    kind = SelectField("Kind", choices=[SelectChoice(k, v) for k, v in monographs.SAFETY_KINDS.items()])
    term = StringField("What", validators=[Length(max=160)], description="e.g. Opioid analgesics")
    severity = SelectField("Severity", choices=[SelectChoice(s, s.capitalize()) for s in SEVERITIES])
    match_terms = TextAreaField(
        "Triggered by", validators=[Length(max=5000)], render_kw={"rows": 4},
        description="One word or phrase a line. Found as whole words in a patient's medications or "
                    "conditions, it shows this entry to the pharmacist reviewing a prescription. Leave "
                    "empty for an entry that should not be raised automatically (e.g. alcohol).")
    note = TextAreaField("Why it matters", validators=[Length(max=monographs.MAX_NOTE)],
                         render_kw={"rows": 3})
    submit = SubmitField("Save entry")


class SafetyEditForm(SafetyForm):
    version = HiddenField()


class RemoveForm(FlaskForm):
    """A remove button: the version of the row the admin saw, so a row changed since is not removed."""

    version = HiddenField()


# The choices are checked by the services, whose messages say what to choose.
APPROVAL_CHOICES = [SelectChoice("approved", "Approved (on the label)"),
                    SelectChoice("off_label", "Off-label (not approved for this use)")]


class UseForm(FlaskForm):
    name = StringField("Use", validators=[Length(max=160)], description="e.g. Alcohol dependence")
    approved = RadioField("Approval", choices=APPROVAL_CHOICES, validate_choice=False,
                          description="The public page lists off-label uses apart, each marked off-label.")
    # No level is preselected: a claim of strong evidence must be chosen, never a default left alone.
    evidence = SelectField("Strength of evidence", validate_choice=False,
                           choices=[SelectChoice("", "Choose…")]
                           + [SelectChoice(e, e.capitalize()) for e in EVIDENCE_LEVELS])
    note = TextAreaField("Note", validators=[Length(max=monographs.MAX_NOTE)], render_kw={"rows": 3},
                         description="One plain sentence on the evidence.")

    def approved_value(self) -> bool | None:
        return {"approved": True, "off_label": False}.get(self.approved.data or "")


class DosingForm(FlaskForm):
    indication = StringField("Use", validators=[Length(max=160)], description="e.g. Alcohol dependence")
    dose = StringField("Dose", validators=[Length(max=80)], description="As patients read it, e.g. 50 mg")
    frequency = StringField("How often", validators=[Length(max=80)], description="e.g. Once daily")
    timing = StringField("When", validators=[Length(max=160)], description="e.g. Usually evening")
    duration = StringField("How long", validators=[Length(max=160)], description="e.g. 3 to 12 months")
    off_label = BooleanField("Off-label dose",
                             description="The public page marks the row off-label.")
    min_daily_mg = DecimalNumberField("Lowest usual daily dose (mg)", places=None, validators=[Optional()],
                                      description="With the highest, the pharmacist's review flags a "
                                                  "prescription outside this range. Leave both empty for "
                                                  "none.")
    max_daily_mg = DecimalNumberField("Highest usual daily dose (mg)", places=None, validators=[Optional()])


class FaqForm(FlaskForm):
    question = StringField("Question", validators=[Length(max=300)],
                           description="As a patient would ask it.")
    answer = TextAreaField("Answer (Markdown)", validators=[Length(max=monographs.MAX_SECTION)],
                           render_kw={"rows": 8}, description=MARKDOWN_HELP)


class UseEditForm(UseForm):
    version = HiddenField()


class DosingEditForm(DosingForm):
    version = HiddenField()


class FaqEditForm(FaqForm):
    version = HiddenField()


# A new row has no version to check; an edited one carries the version it was read at.
ROW_FORMS: dict[str, type[FlaskForm]] = {"uses": UseForm, "dosing": DosingForm, "faq": FaqForm}
ROW_EDIT_FORMS: dict[str, type[FlaskForm]] = {"uses": UseEditForm, "dosing": DosingEditForm,
                                              "faq": FaqEditForm}


def row_fields(form: FlaskForm) -> object:
    """The service's fields of a posted row form."""
    if isinstance(form, UseForm):
        return monograph_rows.UseFields(name=form.name.data or "", approved=form.approved_value(),
                                        evidence=form.evidence.data or "", note=form.note.data or "")
    if isinstance(form, DosingForm):
        return monograph_rows.DosingFields(
            indication=form.indication.data or "", dose=form.dose.data or "",
            frequency=form.frequency.data or "", timing=form.timing.data or "",
            duration=form.duration.data or "", off_label=bool(form.off_label.data),
            min_daily_mg=form.min_daily_mg.data, max_daily_mg=form.max_daily_mg.data)
    if isinstance(form, FaqForm):
        return monograph_rows.FaqFields(question=form.question.data or "", answer=form.answer.data or "")
    raise TypeError(type(form).__name__)


def row_form_data(kind: str, row: Any) -> dict[str, object]:
    """A stored row as the data of its edit form."""
    version = str(row.version)
    if kind == "uses":
        return {"name": row.name, "approved": "approved" if row.approved else "off_label",
                "evidence": row.evidence, "note": row.note, "version": version}
    if kind == "faq":
        return {"question": row.question, "answer": row.answer_markdown, "version": version}
    return {"indication": row.indication, "dose": row.dose, "frequency": row.frequency, "timing": row.timing,
            "duration": row.duration, "off_label": row.off_label,
            "min_daily_mg": plain_decimal(row.min_daily_mg), "max_daily_mg": plain_decimal(row.max_daily_mg),
            "version": version}
