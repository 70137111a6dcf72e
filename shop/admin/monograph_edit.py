"""Admin edits to the drug monographs: a new monograph, its details and review, its prose sections,
its structured rows (uses, dosing rows, questions and answers) and its safety entries.

The rules of catalog_edit hold here too: each writing function calls begin_write() first, refuses
with EditRefused having changed nothing, and commits the change with its audit row. The monograph's
own fields and each section carry a version (see catalog_edit.claim_version). Changes to a list of
rows (adding, removing, moving) lock the monograph row first, so two admins reordering at once take
turns instead of interleaving positions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from shop import audit
from shop.admin.catalog_edit import (
    MAX_AMOUNT,
    apply_changes,
    check_slug,
    claim_version,
    clean,
    clean_text,
    commit_or_refuse,
    differences,
    refuse,
    refuse_stale,
    require,
)
from shop.catalog.models import (
    EVIDENCE_LEVELS,
    SECTION_KEYS,
    SEVERITIES,
    DosingRow,
    FaqEntry,
    Monograph,
    MonographSection,
    MonographUse,
    SafetyEntry,
    search_key,
)
from shop.database import begin_write
from shop.extensions import db

SAFETY_KINDS = {"contraindication": "Contraindication", "interaction": "Interaction"}
MAX_SUMMARY = 2000
MAX_SECTION = 50_000
MAX_NOTE = 2000
MAX_MATCH_TERMS = 50
EARLIEST_REVIEW = dt.date(1990, 1, 1)
# A new monograph starts with every section (the public page hangs the uses, dosing and safety tables
# on theirs), each with its usual title and no text yet.
SECTION_TITLES = {
    "overview": "Overview",
    "mechanism": "How it works",
    "pharmacokinetics": "How the body handles it",
    "approved_uses": "Approved uses",
    "off_label_uses": "Off-label uses",
    "dosing": "Dosing",
    "contraindications": "Who should not take it, or should take care",
    "interactions": "Interactions",
    "side_effects": "Side effects",
    "evidence": "What the evidence shows",
    "comparison": "How it compares with other options",
}


# Reading -------------------------------------------------------------------------------------------


def all_monographs() -> list[Monograph]:
    stmt = sa.select(Monograph).order_by(Monograph.title).options(
        selectinload(Monograph.products), selectinload(Monograph.sections))
    return list(db.session.scalars(stmt))


def monograph_for_edit(monograph_id: int) -> Monograph | None:
    stmt = sa.select(Monograph).where(Monograph.id == monograph_id).options(
        selectinload(Monograph.sections),
        selectinload(Monograph.uses),
        selectinload(Monograph.dosing),
        selectinload(Monograph.safety_entries),
        selectinload(Monograph.faq),
        selectinload(Monograph.products),
    ).execution_options(populate_existing=True)
    return db.session.scalars(stmt).first()


def _monograph(monograph_id: int, *, lock: bool = False) -> Monograph:
    """The monograph as stored now; `lock` holds its row until commit (PostgreSQL; SQLite's write
    transaction is already exclusive). :raise LookupError:"""
    stmt = sa.select(Monograph).where(Monograph.id == monograph_id).execution_options(populate_existing=True)
    monograph = db.session.scalars(stmt.with_for_update() if lock else stmt).first()
    if monograph is None:
        db.session.rollback()
        raise LookupError(monograph_id)
    return monograph


# The monograph itself ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetailsFields:
    title: str
    drug_name: str
    drug_class: str
    summary: str


@dataclass(frozen=True)
class NewMonographFields(DetailsFields):
    slug: str
    last_reviewed: dt.date | None
    reviewed_by: str


def _details_values(errors: dict[str, str], fields: DetailsFields) -> dict[str, Any]:
    title, drug_name, drug_class = clean(fields.title), clean(fields.drug_name), clean(fields.drug_class)
    summary = clean_text(fields.summary)
    require(errors, "title", title, 120, "the title, e.g. Naltrexone")
    require(errors, "drug_name", drug_name, 120, "the drug's name, e.g. naltrexone hydrochloride")
    require(errors, "drug_class", drug_class, 120, "the drug class, e.g. Opioid receptor antagonist")
    require(errors, "summary", summary, MAX_SUMMARY, "a summary of two or three plain sentences")
    return {"title": title, "drug_name": drug_name, "drug_class": drug_class, "summary": summary}


def _review_values(errors: dict[str, str], last_reviewed: dt.date | None, reviewed_by: str) -> dict[str, Any]:
    reviewer = clean(reviewed_by)
    if last_reviewed is None:
        errors["last_reviewed"] = "Enter the date of the review."
    elif last_reviewed > dt.date.today():
        errors["last_reviewed"] = "The review date cannot be in the future."
    elif last_reviewed < EARLIEST_REVIEW:
        errors["last_reviewed"] = "Check the year of the review date."
    require(errors, "reviewed_by", reviewer, 120, "the reviewer's name and qualification")
    return {"last_reviewed": last_reviewed, "reviewed_by": reviewer}


def create_monograph(actor: Any, fields: NewMonographFields) -> Monograph:
    """A new monograph with every section, titled and still empty: the admin writes them one by one.

    :raise EditRefused: nothing changed.
    """
    begin_write()
    errors: dict[str, str] = {}
    values = _details_values(errors, fields)
    values.update(_review_values(errors, fields.last_reviewed, fields.reviewed_by))
    slug = check_slug(errors, fields.slug or "", values["title"], 80)
    if "slug" not in errors and slug:
        taken = db.session.scalar(sa.select(Monograph.title).where(Monograph.slug == slug))
        if taken is not None:
            errors["slug"] = f"The {taken} monograph already uses the slug {slug!r}; choose another."
    if errors:
        refuse(errors)
    monograph = Monograph(slug=slug, **values, sections=[
        MonographSection(key=key, title=SECTION_TITLES[key], body_markdown="", position=position)
        for position, key in enumerate(SECTION_KEYS)])
    db.session.add(monograph)
    conflict = {"slug": f"Another monograph took the slug {slug!r} just now; choose another."}
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        refuse(conflict)
    audit.record("monograph.created", object_type="monograph", object_id=monograph.id, actor=actor,
                 slug=slug, title=values["title"], drug_name=values["drug_name"],
                 last_reviewed=values["last_reviewed"], reviewed_by=values["reviewed_by"])
    commit_or_refuse(conflict)
    return monograph


def _save_monograph_fields(actor: Any, monograph_id: int, values: dict[str, Any], seen_version: int,
                           action: str) -> Monograph:
    """The version-checked save shared by the details and the review forms (one version covers the
    monograph's own fields)."""
    monograph = _monograph(monograph_id)
    if not differences(monograph, values):
        db.session.rollback()
        return monograph
    if not claim_version(Monograph, monograph_id, seen_version):
        refuse_stale(monograph, values, "This monograph")
    db.session.refresh(monograph)
    changed = apply_changes(monograph, values)
    if "summary" in changed:
        changed["summary"] = ["…", "…"]
    audit.record(action, object_type="monograph", object_id=monograph.id, actor=actor, changes=changed,
                 version=monograph.version)
    db.session.commit()
    return monograph


def update_details(actor: Any, monograph_id: int, fields: DetailsFields, seen_version: int) -> Monograph:
    """Title, drug name, drug class and summary (the slug, its public address, stays).

    :raise LookupError: no such monograph. :raise EditRefused: bad input.
    :raise EditConflict: someone else saved the monograph since `seen_version`. Nothing changes on a raise.
    """
    begin_write()
    errors: dict[str, str] = {}
    values = _details_values(errors, fields)
    if errors:
        refuse(errors)
    return _save_monograph_fields(actor, monograph_id, values, seen_version, "monograph.details_updated")


def set_review(actor: Any, monograph_id: int, last_reviewed: dt.date | None, reviewed_by: str,
               seen_version: int) -> Monograph:
    """Record who last reviewed the monograph, and when.

    :raise LookupError: no such monograph. :raise EditRefused: bad input.
    :raise EditConflict: someone else saved the monograph since `seen_version`. Nothing changes on a raise.
    """
    begin_write()
    errors: dict[str, str] = {}
    values = _review_values(errors, last_reviewed, reviewed_by)
    if errors:
        refuse(errors)
    return _save_monograph_fields(actor, monograph_id, values, seen_version, "monograph.reviewed")


# Sections ------------------------------------------------------------------------------------------


def update_section(actor: Any, monograph_id: int, key: str, title: str, body: str,
                   seen_version: int) -> MonographSection:
    """Save one section's title and Markdown text, read at `seen_version`.

    :raise LookupError: no such monograph or section. :raise EditRefused: bad input.
    :raise EditConflict: someone else saved the section since `seen_version`. Nothing changes on a raise.
    """
    begin_write()
    section = db.session.scalars(
        sa.select(MonographSection).where(MonographSection.monograph_id == monograph_id,
                                          MonographSection.key == key)
        .execution_options(populate_existing=True)).first()
    if section is None:
        db.session.rollback()
        raise LookupError(key)
    errors: dict[str, str] = {}
    title, body = clean(title), clean_text(body)
    require(errors, "title", title, 120, "the section's title")
    require(errors, "body", body, MAX_SECTION, "the section's text")
    if errors:
        refuse(errors)
    values = {"title": title, "body_markdown": body}
    if not differences(section, values):
        db.session.rollback()
        return section
    if not claim_version(MonographSection, section.id, seen_version):
        refuse_stale(section, values, "This section", fields={"body_markdown": "body"})
    db.session.refresh(section)
    before = len(section.body_markdown)
    changed = apply_changes(section, values)
    details: dict[str, Any] = {"key": key, "version": section.version}
    if "title" in changed:
        details["title"] = changed["title"]
    if "body_markdown" in changed:
        details["body_chars"] = [before, len(body)]
    audit.record("monograph.section_updated", object_type="monograph", object_id=monograph_id,
                 actor=actor, **details)
    db.session.commit()
    return section


# Safety entries ------------------------------------------------------------------------------------


@dataclass
class SafetyFields:
    kind: str
    term: str
    severity: str
    note: str
    match_terms: str  # as typed: one word or phrase a line


def match_terms_of(text: str) -> list[str]:
    """Typed lines -> lower-case, trimmed, de-duplicated terms, in the order typed."""
    terms: list[str] = []
    for line in (text or "").splitlines():
        term = clean(line).lower()
        if term and term not in terms:
            terms.append(term)
    return terms


def _safety_values(fields: SafetyFields) -> dict[str, Any]:
    errors: dict[str, str] = {}
    term, note = clean(fields.term), (fields.note or "").strip()
    if fields.kind not in SAFETY_KINDS:
        errors["kind"] = "Choose contraindication or interaction."
    require(errors, "term", term, 160, "what it is, e.g. Opioid analgesics")
    if fields.severity not in SEVERITIES:
        errors["severity"] = "Choose severe, moderate or minor."
    if len(note) > MAX_NOTE:
        errors["note"] = f"At most {MAX_NOTE} characters."
    # No terms is allowed: some entries (alcohol, say) are for reading, not for automatic warnings.
    terms = match_terms_of(fields.match_terms)
    if len(terms) > MAX_MATCH_TERMS:
        errors["match_terms"] = f"At most {MAX_MATCH_TERMS} words or phrases."
    elif any(len(t) > 80 or not search_key(t) for t in terms):
        errors["match_terms"] = "Each line needs letters or digits, and at most 80 characters."
    if errors:
        refuse(errors)
    return {"kind": fields.kind, "term": term, "severity": fields.severity, "note": note,
            "match_terms": "\n".join(terms)}


def add_safety_entry(actor: Any, monograph_id: int, fields: SafetyFields) -> SafetyEntry:
    """:raise LookupError: no such monograph. :raise EditRefused: nothing changed."""
    begin_write()
    monograph = _monograph(monograph_id, lock=True)
    values = _safety_values(fields)
    position = max((e.position for e in monograph.safety_entries), default=-1) + 1
    entry = SafetyEntry(monograph_id=monograph.id, position=position, **values)
    db.session.add(entry)
    db.session.flush()
    audit.record("monograph.safety_added", object_type="monograph", object_id=monograph.id, actor=actor,
                 entry_id=entry.id, kind=values["kind"], term=values["term"], severity=values["severity"],
                 match_terms=values["match_terms"].splitlines())
    db.session.commit()
    return entry


def _safety_entry(monograph_id: int, entry_id: int) -> SafetyEntry:
    entry = db.session.get(SafetyEntry, entry_id, populate_existing=True)
    if entry is None or entry.monograph_id != monograph_id:
        db.session.rollback()
        raise LookupError(entry_id)
    return entry


def update_safety_entry(actor: Any, monograph_id: int, entry_id: int, fields: SafetyFields) -> SafetyEntry:
    """:raise LookupError: no such entry of this monograph. :raise EditRefused: nothing changed."""
    begin_write()
    entry = _safety_entry(monograph_id, entry_id)
    changed = apply_changes(entry, _safety_values(fields))
    if changed:
        if "note" in changed:
            changed["note"] = ["…", "…"]
        audit.record("monograph.safety_updated", object_type="monograph", object_id=monograph_id,
                     actor=actor, entry_id=entry.id, changes=changed)
    db.session.commit()
    return entry


def remove_safety_entry(actor: Any, monograph_id: int, entry_id: int) -> str:
    """Returns the removed entry's term. :raise LookupError: no such entry of this monograph."""
    begin_write()
    entry = _safety_entry(monograph_id, entry_id)
    term = entry.term
    audit.record("monograph.safety_removed", object_type="monograph", object_id=monograph_id, actor=actor,
                 entry_id=entry.id, kind=entry.kind, term=term, severity=entry.severity)
    db.session.delete(entry)
    db.session.commit()
    return term


# Uses, dosing rows and questions -------------------------------------------------------------------


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
    if value is None:
        return None
    if not value.is_finite() or value <= 0:
        errors[name] = "Enter more than zero milligrams."
    elif value.as_tuple().exponent < -3:  # type: ignore[operator]
        errors[name] = "At most three decimals."
    elif value > MAX_AMOUNT:
        errors[name] = "That dose is too large."
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


@dataclass(frozen=True)
class RowKind:
    """One kind of a monograph's ordered rows (ROW_KINDS is keyed by the name URLs use). Its `validate`
    returns the column values and {form field: message}; `group` says which rows a row moves among
    (uses move within approved or off-label, as the public page lists them apart)."""

    model: Any
    noun: str
    audit_noun: str
    validate: Callable[[Any], tuple[dict[str, Any], dict[str, str]]]
    name_of: Callable[[Any], str]
    group: Callable[[Any], object] = lambda row: None


ROW_KINDS = {
    "uses": RowKind(MonographUse, "use", "use", _use_values, lambda r: r.name, group=lambda r: r.approved),
    "dosing": RowKind(DosingRow, "dosing row", "dosing", _dosing_values, lambda r: r.indication),
    "faq": RowKind(FaqEntry, "question", "faq", _faq_values, lambda r: r.question),
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
    """A new row at the end of its list. :raise LookupError: no such monograph. :raise EditRefused:"""
    begin_write()
    _monograph(monograph_id, lock=True)
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


def update_row(actor: Any, monograph_id: int, kind: RowKind, row_id: int, fields: Any) -> Any:
    """:raise LookupError: no such row of this monograph. :raise EditRefused: nothing changed."""
    begin_write()
    row = _row(kind, monograph_id, row_id)
    changed = apply_changes(row, _validated(kind, fields))
    if changed:
        audit.record(f"monograph.{kind.audit_noun}_updated", object_type="monograph", object_id=monograph_id,
                     actor=actor, row_id=row.id,
                     changes={name: [_short(old), _short(new)] for name, (old, new) in changed.items()})
    db.session.commit()
    return row


def remove_row(actor: Any, monograph_id: int, kind: RowKind, row_id: int) -> str:
    """Returns the removed row's name. :raise LookupError: no such row of this monograph."""
    begin_write()
    _monograph(monograph_id, lock=True)
    row = _row(kind, monograph_id, row_id)
    name = kind.name_of(row)
    kept = {c.key: getattr(row, c.key) for c in kind.model.__table__.columns
            if c.key not in ("id", "monograph_id", "position")}
    audit.record(f"monograph.{kind.audit_noun}_removed", object_type="monograph", object_id=monograph_id,
                 actor=actor, row_id=row.id, **_logged(kept))
    db.session.delete(row)
    db.session.commit()
    return name


def move_row(actor: Any, monograph_id: int, kind: RowKind, row_id: int, up: bool) -> str:
    """Swap a row with the one before (or after) it in its group; returns the row's name.

    :raise LookupError: no such row of this monograph. :raise EditRefused: it is already first (last).
    """
    begin_write()
    _monograph(monograph_id, lock=True)
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
