"""Safety checks shown to the pharmacist before approval (a drug utilisation review).

Matches the patient's profile against the drug's monograph: contraindications and interactions
(their match terms found in the patient's medications and conditions), allergies to the drug,
duplicate therapy, a daily dose outside the monograph's usual range, and a patient name or date of
birth that differs from the account.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from shop.accounts.models import User
from shop.catalog.models import Product, Strength, search_key
from shop.extensions import db

SEVERITY_ORDER = {"severe": 0, "moderate": 1, "minor": 2}


@dataclass(frozen=True)
class SafetyWarning:
    severity: str  # severe | moderate | minor
    kind: str  # contraindication | interaction | allergy | duplicate | dose | identity
    title: str
    detail: str


def _contains(haystack: str, needle: str) -> bool:
    # Whole words only, ignoring case and punctuation: "opioid" matches "opioid use disorder" but
    # "codeine" does not match "decodeine".
    hay, pin = f" {search_key(haystack)} ", f" {search_key(needle)} "
    return bool(pin.strip()) and pin in hay


def profile_warnings(patient: User, product: Product) -> list[SafetyWarning]:
    warnings: list[SafetyWarning] = []
    monograph = product.monograph
    medications = [e.text for e in patient.entries("medication")]
    conditions = [e.text for e in patient.entries("condition")]
    if monograph is not None:
        for entry in monograph.safety_entries:
            hits = sorted({text for text in medications + conditions
                           for term in entry.match_list if _contains(text, term)})
            if hits:
                warnings.append(SafetyWarning(
                    entry.severity, entry.kind,
                    f"{entry.kind.capitalize()}: {entry.term}",
                    f"Patient lists {', '.join(hits)}. {entry.note}".strip(),
                ))
    names = [product.name, product.generic_name, *product.brand_names]
    if monograph is not None:
        names.append(monograph.drug_name)
    for allergy in patient.entries("allergy"):
        if any(_contains(allergy.text, name) or _contains(name, allergy.text) for name in names):
            warnings.append(SafetyWarning("severe", "allergy", f"Allergy: {allergy.text}",
                                    f"The patient reports an allergy that matches {product.name}."))
    return warnings


def duplicate_warnings(patient: User, product: Product, exclude_id: int | None) -> list[SafetyWarning]:
    from shop.prescriptions.models import APPROVED, Prescription

    today = dt.date.today()
    others = db.session.scalars(
        sa.select(Prescription).where(
            Prescription.customer_id == patient.id,
            Prescription.status == APPROVED,
            Prescription.product_id == product.id,
            Prescription.id != (exclude_id or 0),
            Prescription.expires_on >= today,
        )
    ).all()
    return [
        SafetyWarning("moderate", "duplicate", "Duplicate therapy",
                f"Prescription #{p.id} for {product.name} is already approved and active "
                f"(expires {p.expires_on:%d %b %Y}, {p.quantity_remaining} units left).")
        for p in others
    ]


def dose_warnings(product: Product, strength: Strength, units_per_day: Decimal | None) -> list[SafetyWarning]:
    monograph = product.monograph
    if monograph is None or units_per_day is None or strength.unit != "mg":
        return []
    daily = strength.amount * units_per_day
    ranges = [(r.min_daily_mg, r.max_daily_mg) for r in monograph.dosing
              if r.min_daily_mg is not None and r.max_daily_mg is not None]
    if not ranges or any(low <= daily <= high for low, high in ranges):
        return []
    usual = "; ".join(f"{low.normalize():f}–{high.normalize():f} mg" for low, high in ranges)
    return [SafetyWarning("severe", "dose", "Dose outside the usual range",
                    f"{daily.normalize():f} mg a day ({units_per_day.normalize():f} × {strength.label}); "
                    f"the monograph's usual daily doses are {usual}.")]


def identity_warnings(patient: User, name: str | None, born: dt.date | None) -> list[SafetyWarning]:
    warnings = []
    if name and search_key(name) != search_key(patient.legal_name):
        warnings.append(SafetyWarning("moderate", "identity", "Patient name differs from the account",
                                f"Prescription: {name}; account: {patient.legal_name}."))
    if born and patient.date_of_birth and born != patient.date_of_birth:
        warnings.append(SafetyWarning("moderate", "identity", "Date of birth differs from the account",
                                f"Prescription: {born:%d %b %Y}; account: {patient.date_of_birth:%d %b %Y}."))
    return warnings


def sort_warnings(warnings: list[SafetyWarning]) -> list[SafetyWarning]:
    return sorted(warnings, key=lambda w: (SEVERITY_ORDER[w.severity], w.kind, w.title))
