"""Admin edits to a monograph's ordered rows: its uses, dosing rows and questions (with answers).

As in monograph_edit, each writing function calls begin_write() first, refuses with common.Refused
having changed nothing, and commits the change with its audit row. Adding, removing or moving a row
locks the monograph row first, so two admins reordering at once take turns instead of interleaving
positions.

Each row carries a version (see versions): a save or a removal names the version the admin read, and
one made after someone else saved the row is refused rather than losing their change. A move checks no
version: it changes only positions, which no edit form holds, so it cannot undo anyone's edit (nor does
it bump the version, so it leaves other admins' open forms valid); moves take turns under the monograph
lock and each is applied to the order as stored then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from shop import audit
from shop.admin.common import refuse
from shop.admin.field_rules import check_amount, clean, clean_text, require
from shop.admin.monograph_edit import MAX_NOTE, MAX_SECTION, load_monograph
from shop.admin.versions import claim_for_removal, save_versioned, shown
from shop.catalog.models import EVIDENCE_LEVELS, DosingRow, FaqEntry, MonographUse
from shop.database import begin_write
from shop.extensions import db


@dataclass(frozen=True)
class UseFields:
    name: str
    approved: bool | None  # None: neither approved nor off-label was chosen
    evidence: str
    note: str


@dataclass(frozen=True)
class DosingFields:
    indication: str
    dose: str
    frequency: str
    timing: str
    duration: str
    off_label: bool
    min_daily_mg: Decimal | None
    max_daily_mg: Decimal | None


@dataclass(frozen=True)
class FaqFields:
    question: str
    answer: str


def _use_values(fields: UseFields) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    name, note = clean(fields.name), clean_text(fields.note)
    require(errors, "name", name, 160, "the use, e.g. Alcohol dependence")
    if fields.approved is None:
        errors["approved"] = "Choose approved or off-label."
    if fields.evidence not in EVIDENCE_LEVELS:
        errors["evidence"] = "Choose the strength of the evidence from the list."
    if len(note) > MAX_NOTE:
        errors["note"] = f"At most {MAX_NOTE} characters."
    return {"name": name, "approved": fields.approved, "evidence": fields.evidence, "note": note}, errors


def _daily_mg(errors: dict[str, str], name: str, value: Decimal | None) -> Decimal | None:
    if value is not None:
        check_amount(errors, name, value, not_positive="Enter more than zero milligrams.",
                     too_large="That dose is too large.")
    return value


def _dosing_values(fields: DosingFields) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    text = {name: clean(getattr(fields, name)) for name in ("indication", "dose", "frequency", "timing",
                                                            "duration")}
    require(errors, "indication", text["indication"], 160, "what the dose is for, e.g. Alcohol dependence")
    require(errors, "dose", text["dose"], 80, "the dose, e.g. 50 mg")
    require(errors, "frequency", text["frequency"], 80, "how often, e.g. Once daily")
    for name in ("timing", "duration"):
        if len(text[name]) > 160:
            errors[name] = "At most 160 characters."
    low = _daily_mg(errors, "min_daily_mg", fields.min_daily_mg)
    high = _daily_mg(errors, "max_daily_mg", fields.max_daily_mg)
    if not ({"min_daily_mg", "max_daily_mg"} & errors.keys()):
        if (low is None) != (high is None):
            # The pharmacist's dose check uses only complete ranges: half of one would be ignored.
            errors["min_daily_mg" if low is None else "max_daily_mg"] = (
                "Enter both the lowest and the highest usual daily dose, or neither.")
        elif low is not None and high is not None and low > high:
            errors["max_daily_mg"] = "The highest daily dose cannot be below the lowest."
    return {**text, "off_label": fields.off_label, "min_daily_mg": low, "max_daily_mg": high}, errors


def _faq_values(fields: FaqFields) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    question, answer = clean(fields.question), clean_text(fields.answer)
    require(errors, "question", question, 300, "the question")
    require(errors, "answer", answer, MAX_SECTION, "the answer")
    return {"question": question, "answer_markdown": answer}, errors


def _describe_use(name: str, value: Any) -> str:
    if name == "approved":
        return "approved" if value else "off-label"
    return shown(value.capitalize() if name == "evidence" else value)


def _describe_dosing(name: str, value: Any) -> str:
    """A stored daily dose as typed (25, not 25.000)."""
    return shown(f"{value.normalize():f} mg" if isinstance(value, Decimal) else value)


@dataclass(frozen=True)
class RowKind:
    """One kind of a monograph's ordered rows (ROW_KINDS is keyed by the name URLs use). Its `validate`
    returns the column values and {form field: message}; `group` says which rows a row moves among
    (uses move within approved or off-label, as the public page lists them apart). A stale save's
    message quotes the stored values with `describe`, beside the form fields `fields` maps columns to
    (where their names differ)."""

    model: Any
    noun: str
    audit_noun: str
    validate: Callable[[Any], tuple[dict[str, Any], dict[str, str]]]
    name_of: Callable[[Any], str]
    group: Callable[[Any], object] = lambda row: None
    describe: Callable[[str, Any], str] = lambda name, value: shown(value)
    fields: Mapping[str, str] = field(default_factory=dict)


ROW_KINDS = {
    "uses": RowKind(MonographUse, "use", "use", _use_values, lambda r: r.name, group=lambda r: r.approved,
                    describe=_describe_use),
    "dosing": RowKind(DosingRow, "dosing row", "dosing", _dosing_values, lambda r: r.indication,
                      describe=_describe_dosing),
    "faq": RowKind(FaqEntry, "question", "faq", _faq_values, lambda r: r.question,
                   fields={"answer_markdown": "answer"}),
}


def _validated(kind: RowKind, fields: Any) -> dict[str, Any]:
    values, errors = kind.validate(fields)
    if errors:
        refuse(errors)
    return values


def _short(value: Any) -> Any:
    """A value for an audit row: a long text by its length only."""
    return f"({len(value)} characters)" if isinstance(value, str) and len(value) > 200 else value


def _logged(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _short(value) for name, value in values.items()}


def _rows(kind: RowKind, monograph_id: int) -> list[Any]:
    return list(db.session.scalars(
        sa.select(kind.model).where(kind.model.monograph_id == monograph_id)
        .order_by(kind.model.position, kind.model.id).execution_options(populate_existing=True)))


def _row(kind: RowKind, monograph_id: int, row_id: int, rows: list[Any] | None = None) -> Any:
    if rows is not None:
        row = next((r for r in rows if r.id == row_id), None)
    else:
        row = db.session.scalars(sa.select(kind.model).where(kind.model.id == row_id).with_for_update()
                                 .execution_options(populate_existing=True)).first()
    if row is None or row.monograph_id != monograph_id:
        db.session.rollback()
        raise LookupError(row_id)
    return row


def add_row(actor: Any, monograph_id: int, kind: RowKind, fields: Any) -> Any:
    """A new row at the end of its list. :raise LookupError: no such monograph. :raise Refused:"""
    begin_write()
    load_monograph(monograph_id, lock=True)
    values = _validated(kind, fields)
    rows = _rows(kind, monograph_id)
    row = kind.model(monograph_id=monograph_id, position=max((r.position for r in rows), default=-1) + 1,
                     **values)
    db.session.add(row)
    db.session.flush()
    audit.record(f"monograph.{kind.audit_noun}_added", object_type="monograph", object_id=monograph_id,
                 actor=actor, row_id=row.id, **_logged(values))
    db.session.commit()
    return row


def update_row(actor: Any, monograph_id: int, kind: RowKind, row_id: int, fields: Any,
               seen_version: int) -> Any:
    """Save a row read at `seen_version`. Values equal to the stored ones save nothing.

    :raise LookupError: no such row of this monograph. :raise Refused: bad input.
    :raise EditConflict: someone else saved the row since `seen_version`. Nothing changes on a raise.
    """
    begin_write()
    row = _row(kind, monograph_id, row_id)
    changed = save_versioned(row, _validated(kind, fields), seen_version, f"This {kind.noun}",
                             fields=kind.fields, describe=kind.describe)
    if changed is None:
        return row
    audit.record(f"monograph.{kind.audit_noun}_updated", object_type="monograph", object_id=monograph_id,
                 actor=actor, row_id=row.id, version=row.version,
                 changes={name: [_short(old), _short(new)] for name, (old, new) in changed.items()})
    db.session.commit()
    return row


def remove_row(actor: Any, monograph_id: int, kind: RowKind, row_id: int, seen_version: int) -> str:
    """Remove a row read at `seen_version`; returns its name.

    :raise LookupError: no such row of this monograph.
    :raise EditConflict: someone else saved the row since `seen_version`; it stays.
    """
    begin_write()
    load_monograph(monograph_id, lock=True)
    row = _row(kind, monograph_id, row_id)
    name = kind.name_of(row)
    claim_for_removal(row, seen_version, f"The {kind.noun} {name!r}")
    kept = {c.key: getattr(row, c.key) for c in kind.model.__table__.columns
            if c.key not in ("id", "monograph_id", "position")}
    audit.record(f"monograph.{kind.audit_noun}_removed", object_type="monograph", object_id=monograph_id,
                 actor=actor, row_id=row.id, **_logged(kept))
    db.session.delete(row)
    db.session.commit()
    return name


def move_row(actor: Any, monograph_id: int, kind: RowKind, row_id: int, up: bool) -> str:
    """Swap a row with the one before (or after) it in its group; returns the row's name.

    :raise LookupError: no such row of this monograph. :raise Refused: it is already first (last).
    """
    begin_write()
    load_monograph(monograph_id, lock=True)
    rows = _rows(kind, monograph_id)
    row = _row(kind, monograph_id, row_id, rows)
    here = rows.index(row)
    others = [i for i, r in enumerate(rows) if kind.group(r) == kind.group(row)]
    place = others.index(here) + (-1 if up else 1)
    if not 0 <= place < len(others):
        refuse({"move": f"{kind.name_of(row)!r} is already {'first' if up else 'last'}."})
    there = others[place]
    rows[here], rows[there] = rows[there], rows[here]
    for position, each in enumerate(rows):  # renumbered from 0: any gaps or ties left by removals go
        each.position = position
    audit.record(f"monograph.{kind.audit_noun}_moved", object_type="monograph", object_id=monograph_id,
                 actor=actor, row_id=row.id, direction="up" if up else "down", name=kind.name_of(row))
    db.session.commit()
    return kind.name_of(row)
