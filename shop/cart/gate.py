"""The prescription gate: may this customer buy these prescription-only lines?

Each prescription-only strength in the cart needs approved, unexpired prescriptions of the same
customer for that product and strength whose remaining quantity covers the units in the cart.
Prescriptions are used earliest-expiring first. Over-the-counter lines always pass; a line for a
controlled substance or an inactive product never does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from shop.accounts.models import User
from shop.catalog.models import Package
from shop.extensions import db
from shop.prescriptions.models import APPROVED, IN_REVIEW, REJECTED, UPLOADED, Prescription

OK_REASONS = ("otc", "covered")


@dataclass
class Coverage:
    reason: str  # otc, covered, sign_in, no_prescription, pending, rejected, expired, insufficient,
    #             controlled, unavailable
    message: str
    action: str = ""  # what fixes it: "upload", "sign_in", "remove"
    uses: list[tuple[Prescription, int]] = field(default_factory=list)  # (prescription, units)

    @property
    def ok(self) -> bool:
        return self.reason in OK_REASONS


def _units_by_strength(lines: list[tuple[Package, int]]) -> dict[int, int]:
    units: dict[int, int] = {}
    for package, quantity in lines:
        units[package.strength_id] = units.get(package.strength_id, 0) + package.units * quantity
    return units


RETIRED_PACKAGE = Coverage("unavailable", "This package size is no longer sold. Please remove it and "
                           "choose another size.", "remove")


def evaluate(customer: User | None, lines: list[tuple[Package, int]],
             today: dt.date | None = None) -> dict[int, Coverage]:
    """Coverage per strength id of the cart's lines."""
    today = today or dt.date.today()
    needed = _units_by_strength(lines)
    strengths = {package.strength_id: package.strength for package, _ in lines}
    rx_strengths = [sid for sid, s in strengths.items() if s.product.prescription_only]
    prescriptions: list[Prescription] = []
    if customer is not None and rx_strengths:
        product_ids = {strengths[sid].product_id for sid in rx_strengths}
        prescriptions = list(db.session.scalars(
            sa.select(Prescription)
            .where(Prescription.customer_id == customer.id,
                   sa.or_(Prescription.product_id.in_(product_ids),
                          Prescription.requested_product_id.in_(product_ids)))
            .order_by(Prescription.expires_on, Prescription.id)
        ))
    result: dict[int, Coverage] = {}
    for strength_id, units in needed.items():
        strength = strengths[strength_id]
        product = strength.product
        if product.controlled_substance:
            result[strength_id] = Coverage("controlled", "This shop does not sell controlled "
                                           "substances online. Please remove it.", "remove")
        elif not (product.active and strength.active):
            result[strength_id] = Coverage("unavailable", "This item is no longer available. "
                                           "Please remove it.", "remove")
        elif not product.prescription_only:
            result[strength_id] = Coverage("otc", "No prescription needed.")
        elif customer is None:
            result[strength_id] = Coverage("sign_in", "Prescription required: sign in so we can "
                                           "check your prescriptions.", "sign_in")
        else:
            result[strength_id] = _cover(strength_id, product.id, units, prescriptions, today)
    return result


def _cover(strength_id: int, product_id: int, units: int, prescriptions: list[Prescription],
           today: dt.date) -> Coverage:
    usable = [p for p in prescriptions
              if p.status == APPROVED and p.strength_id == strength_id
              and p.expires_on is not None and p.expires_on >= today and p.quantity_remaining > 0]
    if sum(p.quantity_remaining for p in usable) >= units:
        uses, left = [], units
        for p in usable:
            take = min(left, p.quantity_remaining)
            uses.append((p, take))
            left -= take
            if left == 0:
                break
        numbers = ", ".join(f"#{p.id} ({p.quantity_remaining} units left)" for p, _ in uses)
        return Coverage("covered", f"Covered by prescription {numbers}.", uses=uses)
    if usable:
        remaining = sum(p.quantity_remaining for p in usable)
        return Coverage("insufficient", f"Your prescription has {remaining} units left, but this cart "
                        f"has {units}. Choose a smaller package, or upload a new prescription.", "upload")
    mine = [p for p in prescriptions if p.product_id == product_id or p.requested_product_id == product_id]
    if any(p.status == APPROVED and p.strength_id == strength_id and p.expires_on and p.expires_on < today
           for p in mine):
        return Coverage("expired", "Your prescription for this strength has expired. Upload a new "
                        "one from your prescriber.", "upload")
    if any(p.status in (UPLOADED, IN_REVIEW) for p in mine):
        return Coverage("pending", "Your prescription is waiting for our pharmacist's review. You "
                        "can check out once it is approved; we email you.")
    if any(p.status == APPROVED and p.strength_id == strength_id for p in mine):
        return Coverage("insufficient", "Your prescription for this strength is used up. Upload a "
                        "new one to order more.", "upload")
    latest = max(mine, key=lambda p: p.id) if mine else None
    if latest is not None and latest.status == REJECTED:
        return Coverage("rejected", f"We could not accept your prescription #{latest.id} "
                        f"({latest.rejection_label.lower()}). Upload a new one.", "upload")
    if any(p.status == APPROVED for p in mine):
        return Coverage("no_prescription", "Your approved prescription is for a different strength. "
                        "Choose that strength, or upload a prescription for this one.", "upload")
    return Coverage("no_prescription", "Prescription required: upload your prescription and our "
                    "pharmacist will check it.", "upload")
