"""Admin edits to the drug monographs: a new monograph, its details and review, its prose sections and
its safety entries (its uses, dosing rows and questions are in monograph_rows).

The rules of catalog_edit hold here too: each writing function calls begin_write() first, refuses
with common.Refused having changed nothing, and commits the change with its audit row. The
monograph's own fields, each section and each safety entry carry a version (see versions): a lost edit
of a safety entry would silently change the pharmacist's automatic safety check, so saving or removing
one read before someone else saved it is refused. Adding a safety entry locks the monograph row first,
so two admins adding at once take turns over the positions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from shop import audit
from shop.admin.common import commit_or_refuse, flush_or_refuse, refuse
from shop.admin.field_rules import check_slug, clean, clean_text, require
from shop.admin.versions import claim_for_removal, save_versioned, shown
from shop.catalog.models import (
    SECTION_KEYS,
    SEVERITIES,
    Monograph,
    MonographSection,
    SafetyEntry,
    search_key,
)
from shop.catalog.services import whole_monograph
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
    stmt = (sa.select(Monograph).where(Monograph.id == monograph_id).options(*whole_monograph())
            .execution_options(populate_existing=True))
    return db.session.scalars(stmt).first()


def load_monograph(monograph_id: int, *, lock: bool = False) -> Monograph:
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

    :raise Refused: nothing changed.
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
    flush_or_refuse(conflict)
    audit.record("monograph.created", object_type="monograph", object_id=monograph.id, actor=actor,
                 slug=slug, title=values["title"], drug_name=values["drug_name"],
                 last_reviewed=values["last_reviewed"], reviewed_by=values["reviewed_by"])
    commit_or_refuse(conflict)
    return monograph


def _save_monograph_fields(actor: Any, monograph_id: int, values: dict[str, Any], seen_version: int,
                           action: str) -> Monograph:
    """The version-checked save shared by the details and the review forms (one version covers the
    monograph's own fields)."""
    monograph = load_monograph(monograph_id)
    changed = save_versioned(monograph, values, seen_version, "This monograph")
    if changed is None:
        return monograph
    if "summary" in changed:
        changed["summary"] = ["…", "…"]
    audit.record(action, object_type="monograph", object_id=monograph.id, actor=actor, changes=changed,
                 version=monograph.version)
    db.session.commit()
    return monograph


def update_details(actor: Any, monograph_id: int, fields: DetailsFields, seen_version: int) -> Monograph:
    """Title, drug name, drug class and summary (the slug, its public address, stays).

    :raise LookupError: no such monograph. :raise Refused: bad input.
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

    :raise LookupError: no such monograph. :raise Refused: bad input.
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

    :raise LookupError: no such monograph or section. :raise Refused: bad input.
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
    changed = save_versioned(section, {"title": title, "body_markdown": body}, seen_version, "This section",
                             fields={"body_markdown": "body"})
    if changed is None:
        return section
    details: dict[str, Any] = {"key": key, "version": section.version}
    if "title" in changed:
        details["title"] = changed["title"]
    if "body_markdown" in changed:
        details["body_chars"] = [len(changed["body_markdown"][0]), len(body)]
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
    """:raise LookupError: no such monograph. :raise Refused: nothing changed."""
    begin_write()
    monograph = load_monograph(monograph_id, lock=True)
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


def _describe_safety(name: str, value: Any) -> str:
    """A stored value as the safety form shows it (match terms one a line there, listed here)."""
    if name == "match_terms":
        return shown(", ".join(value.splitlines())) if value else "none (not raised automatically)"
    if name == "kind":
        return shown(SAFETY_KINDS.get(value, value))
    return shown(value.capitalize() if name == "severity" else value)


def update_safety_entry(actor: Any, monograph_id: int, entry_id: int, fields: SafetyFields,
                        seen_version: int) -> SafetyEntry:
    """Save an entry read at `seen_version`. Values equal to the stored ones save nothing.

    :raise LookupError: no such entry of this monograph. :raise Refused: bad input.
    :raise EditConflict: someone else saved the entry since `seen_version`. Nothing changes on a raise.
    """
    begin_write()
    entry = _safety_entry(monograph_id, entry_id)
    changed = save_versioned(entry, _safety_values(fields), seen_version, "This safety entry",
                             describe=_describe_safety)
    if changed is None:
        return entry
    if "note" in changed:
        changed["note"] = ["…", "…"]
    audit.record("monograph.safety_updated", object_type="monograph", object_id=monograph_id,
                 actor=actor, entry_id=entry.id, changes=changed, version=entry.version)
    db.session.commit()
    return entry


def remove_safety_entry(actor: Any, monograph_id: int, entry_id: int, seen_version: int) -> str:
    """Remove an entry read at `seen_version`; returns its term.

    :raise LookupError: no such entry of this monograph.
    :raise EditConflict: someone else saved the entry since `seen_version`; it stays.
    """
    begin_write()
    entry = _safety_entry(monograph_id, entry_id)
    term = entry.term
    claim_for_removal(entry, seen_version, f"The {entry.kind} {term!r}")
    audit.record("monograph.safety_removed", object_type="monograph", object_id=monograph_id, actor=actor,
                 entry_id=entry.id, kind=entry.kind, term=term, severity=entry.severity)
    db.session.delete(entry)
    db.session.commit()
    return term
