"""The audit log as an admin reads it: plain words for each action, the record an entry is about by its
name, money as money, filters by kind of action, and the raw record kept one click away.

shop/audit.py writes the log for machines (action codes, ids, cents); this module only presents it.
A page costs a fixed number of queries whatever it holds: the named objects are loaded per kind of
object for the whole page (one query each), never per row.

A sign-in with a second factor writes two rows (the password step, then the success). The log shows
the success, the meaningful one, and folds the password step into it (its raw record stays beside the
success's); a password step with no success after it (the second factor never came) keeps its own row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from shop import money
from shop.accounts.models import Address, User
from shop.audit import AuditEvent
from shop.catalog.models import Monograph, Package, Product, Strength
from shop.database import LIKE_ESCAPE, contains_pattern
from shop.dates import range_end, range_start
from shop.extensions import db
from shop.numbers import parse_id
from shop.orders.models import STATUS_LABELS, Order
from shop.prescriptions.models import Prescription

PAGE_SIZE = 50
PASSWORD_STEP, SIGNED_IN = "sign_in.password_accepted", "sign_in.succeeded"

# Kinds of action for the filter: a label and the action-code prefixes that belong to it.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sign-in": ("Sign-ins and sign-outs", ("sign_in.", "sign_out")),
    "accounts": ("Accounts, passwords and profiles", ("account.", "registration.", "password", "two_factor.",
                                                      "profile.", "address.")),
    "users": ("Roles and staff accounts", ("user.", "invitation.")),
    "prices": ("Prices and package sizes", ("price.", "prices.", "package.")),
    "stock": ("Stock", ("stock.",)),
    "catalog": ("Catalog and monographs", ("catalog.", "monograph.")),
    "prescriptions": ("Prescriptions", ("prescription.", "patient_profile.")),
    "orders": ("Orders and payments", ("order.", "payment.")),
}

ACTION_WORDS = {
    SIGNED_IN: "Signed in",
    PASSWORD_STEP: "Password accepted; the second step was not completed",
    "sign_in.failed": "Sign-in failed",
    "sign_in.second_factor_failed": "Wrong second-step code",
    "sign_out": "Signed out",
    "account.created": "Account created",
    "registration.started": "Started a registration (link emailed)",
    "registration.existing_address": "Registration tried with an address that has an account (owner emailed)",
    "password.changed": "Changed their password",
    "password.change_failed": "Password change refused: wrong current password",
    "password.reset": "Set a new password from a reset link",
    "password_reset.requested": "Asked for a password reset link",
    "password_reset.requested_unknown": "Reset link asked for an address with no account",
    "two_factor.enabled": "Turned two-step sign-in on",
    "two_factor.disabled": "Turned two-step sign-in off",
    "profile.updated": "Changed the patient profile",
    "profile.entry_added": "Added a health entry",
    "profile.entry_removed": "Removed a health entry",
    "address.added": "Added an address",
    "address.updated": "Changed an address",
    "address.made_default": "Made an address the default",
    "address.deleted": "Removed an address",
    "user.role_changed": "Changed a role",
    "user.disabled": "Disabled an account",
    "user.enabled": "Enabled an account",
    "user.invitation_resent": "Resent an invitation",
    "price.changed": "Changed a price",
    "price.scheduled": "Scheduled a price change",
    "price.schedule_cancelled": "Cancelled a scheduled price change",
    "prices.imported": "Imported a price file",
    "package.added": "Added a package size",
    "package.retired": "Retired a package size",
    "package.restored": "Put a package size back on sale",
    "stock.received": "Received stock",
    "stock.adjusted": "Adjusted stock",
    "stock.threshold_changed": "Changed a low-stock threshold",
    "stock.imported": "Imported a stock file",
    "stock.expired_written_off": "Wrote off expired stock",
    "catalog.product_created": "Added a product",
    "catalog.product_updated": "Changed a product",
    "catalog.product_deleted": "Deleted a product",
    "catalog.product_activated": "Put a product on sale",
    "catalog.product_deactivated": "Took a product off sale",
    "catalog.alias_added": "Added a brand name or synonym",
    "catalog.alias_removed": "Removed a brand name or synonym",
    "catalog.strength_created": "Added a strength",
    "catalog.strength_updated": "Changed a strength",
    "catalog.strength_deleted": "Deleted a strength",
    "catalog.strength_activated": "Put a strength on sale",
    "catalog.strength_deactivated": "Took a strength off sale",
    "monograph.created": "Added a monograph",
    "monograph.details_updated": "Changed a monograph's details",
    "monograph.reviewed": "Recorded a monograph review",
    "monograph.section_updated": "Changed a monograph section",
    "monograph.safety_added": "Added a contraindication or interaction to a monograph",
    "monograph.safety_updated": "Changed a contraindication or interaction of a monograph",
    "monograph.safety_removed": "Removed a contraindication or interaction from a monograph",
    "prescription.uploaded": "Uploaded a prescription",
    "prescription.claimed": "Claimed a prescription for review",
    "prescription.released": "Gave up a claim on a prescription",
    "prescription.viewed": "Opened a prescription",
    "prescription.approved": "Approved a prescription",
    "prescription.rejected": "Rejected a prescription",
    "patient_profile.viewed": "Read a patient's health profile",
    "order.placed": "Placed an order",
    "order.refund": "Refunded a payment",
    "payment.declined": "Card declined",
    "payment.failed": "Payment failed",
    "payment.hold_released": "Card hold released",
    "payment.hold_cancelled": "Card hold cancelled by a request at Stripe (not a lapse)",
    "payment.amount_mismatch": "Refused a payment for the wrong amount",
}
# Families of codes built from a word (shop/admin/monograph_rows.py, prescription files, order steps).
ROW_NOUNS = {"use": "a use", "dosing": "a dosing row", "faq": "a question"}
ROW_VERBS = {"added": "Added", "updated": "Changed", "removed": "Removed", "moved": "Moved"}
SIGN_IN_METHODS = {None: "password", "totp": "password and authenticator code",
                   "recovery_code": "password and a recovery code",
                   "totp_enrolment": "password, setting up the authenticator"}
# Detail keys said by the object's name already, or of no use to a reader.
QUIET_KEYS = {"strength_id", "product_id", "scheduled_by", "scheduled_change", "change_id", "row_id",
              "entry_id", "file_id", "version"}


def action_words(code: str) -> str:
    """An action code in plain words: "price.changed" -> "Changed a price"."""
    if code in ACTION_WORDS:
        return ACTION_WORDS[code]
    group, _, rest = code.partition(".")
    noun, _, verb = rest.rpartition("_")
    if group == "monograph" and noun in ROW_NOUNS and verb in ROW_VERBS:
        return f"{ROW_VERBS[verb]} {ROW_NOUNS[noun]} of a monograph"
    if group == "prescription" and rest.startswith("file_"):
        return f"{rest.removeprefix('file_').capitalize()} a prescription file"
    if group == "order" and rest in STATUS_LABELS:
        return f"Order moved to “{STATUS_LABELS[rest]}”"
    return code.replace(".", ": ").replace("_", " ").capitalize()


def kind_of(code: str) -> str | None:
    return next((kind for kind, (_, prefixes) in KINDS.items() if code.startswith(prefixes)), None)


# Reading ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    actor: str = ""
    kind: str = ""  # a key of KINDS
    action: str = ""  # one exact action code
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def query_args(self) -> dict[str, str]:
        """The filters as the page's query string carries them (for the "older" link)."""
        return {"actor": self.actor, "kind": self.kind, "action": self.action,
                "from": self.date_from.isoformat() if self.date_from else "",
                "to": self.date_to.isoformat() if self.date_to else ""}


def _folded_password_step() -> sa.ColumnElement[bool]:
    """A password step followed by its success: the same account's next sign-in step is a success,
    with no new password step between them."""
    success, between = aliased(AuditEvent), aliased(AuditEvent)
    no_new_step = ~sa.exists().where(
        between.actor_id == AuditEvent.actor_id, between.action == PASSWORD_STEP, between.id > AuditEvent.id,
        between.id < success.id).correlate_except(between)
    return sa.and_(AuditEvent.action == PASSWORD_STEP, sa.exists().where(
        success.actor_id == AuditEvent.actor_id, success.action == SIGNED_IN, success.id > AuditEvent.id,
        no_new_step).correlate_except(success))


def _statement(filters: Filters, before: int | None) -> sa.Select:
    stmt = sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE_SIZE + 1)
    if filters.actor:
        stmt = stmt.where(AuditEvent.actor_email.like(contains_pattern(filters.actor), escape=LIKE_ESCAPE))
    if filters.kind in KINDS:
        stmt = stmt.where(sa.or_(*(AuditEvent.action.startswith(prefix, autoescape=True)
                                   for prefix in KINDS[filters.kind][1])))
    if filters.action:
        stmt = stmt.where(AuditEvent.action == filters.action)
    else:  # asked for by its code, every password step is shown
        stmt = stmt.where(sa.not_(_folded_password_step()))
    if (start := range_start(filters.date_from)) is not None:
        stmt = stmt.where(AuditEvent.at >= start)
    if (end := range_end(filters.date_to)) is not None:
        stmt = stmt.where(AuditEvent.at < end)
    if before:
        stmt = stmt.where(AuditEvent.id < before)
    return stmt


@dataclass
class Entry:
    """One row of the log as shown."""

    event: AuditEvent
    words: str
    kind: str | None
    about: str  # the record it is about, by name ("" when it is about none)
    facts: list[tuple[str, str]]
    raw: list[str] = field(default_factory=list)  # the stored record(s), as JSON


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    next_before: int | None
    actions: list[tuple[str, list[tuple[str, str]]]]  # kind label, [(code, words)] for the filter


def page(filters: Filters, before: int | None, *, currency: str, may_see_patients: bool) -> Page:
    """One page of the log, newest first (keyset pagination on the id)."""
    events = list(db.session.scalars(_statement(filters, before)))
    more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    names = _names(events, may_see_patients)
    steps = _password_steps(events)
    entries = [_entry(event, names, currency, steps.get(event.id)) for event in events]
    return Page(entries, events[-1].id if more and events else None, _action_choices())


def _action_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    codes = db.session.scalars(sa.select(AuditEvent.action).distinct()).all()
    groups: dict[str, list[tuple[str, str]]] = {}
    for code in codes:
        kind = kind_of(code)
        groups.setdefault(KINDS[kind][0] if kind else "Other", []).append((code, action_words(code)))
    order = [label for label, _ in KINDS.values()] + ["Other"]
    return [(label, sorted(groups[label], key=lambda choice: choice[1]))
            for label in order if label in groups]


def _password_steps(events: Sequence[AuditEvent]) -> dict[int, AuditEvent]:
    """The folded password step of each success on the page (one query): the account's latest password
    step before the success."""
    successes = [e for e in events if e.action == SIGNED_IN and e.actor_id is not None]
    if not successes:
        return {}
    earliest = min(e.at for e in successes) - dt.timedelta(days=1)  # a pending sign-in ends long before
    rows = db.session.scalars(sa.select(AuditEvent).where(
        AuditEvent.action.in_((PASSWORD_STEP, SIGNED_IN)),
        AuditEvent.actor_id.in_({e.actor_id for e in successes}),
        AuditEvent.id <= max(e.id for e in successes), AuditEvent.at >= earliest).order_by(AuditEvent.id))
    found: dict[int, AuditEvent] = {}
    pending: dict[int | None, AuditEvent] = {}
    for row in rows:  # pair each success with the password step just before it, if any
        if row.action == PASSWORD_STEP:
            pending[row.actor_id] = row
        elif (step := pending.pop(row.actor_id, None)) is not None:
            found[row.id] = step
    return found


# Naming the records --------------------------------------------------------------------------------------

def _int_ids(values: Iterable[str | None]) -> set[int]:
    # The one id rule: a stored object id beyond a database integer names no row (and would
    # overflow PostgreSQL's `integer` in the IN list).
    return {number for v in values if (number := parse_id(v)) is not None}


def _user_name(name: str, email: str) -> str:
    return f"{name} ({email})"


def _package_names(ids: set[int]) -> dict[int, str]:
    rows = db.session.execute(sa.select(Package.id, Package.units, Product.name, Strength.label)
                              .join(Strength, Package.strength_id == Strength.id)
                              .join(Product, Strength.product_id == Product.id).where(Package.id.in_(ids)))
    return {pid: f"{product} {label}, pack of {units}" for pid, units, product, label in rows}


def _strength_names(ids: set[int]) -> dict[int, str]:
    rows = db.session.execute(sa.select(Strength.id, Product.name, Strength.label)
                              .join(Product, Strength.product_id == Product.id).where(Strength.id.in_(ids)))
    return {sid: f"{product} {label}" for sid, product, label in rows}


def _product_names(ids: set[int]) -> dict[int, str]:
    return dict(db.session.execute(sa.select(Product.id, Product.name).where(Product.id.in_(ids))).tuples())


def _monograph_names(ids: set[int]) -> dict[int, str]:
    rows = db.session.execute(sa.select(Monograph.id, Monograph.title).where(Monograph.id.in_(ids)))
    return {mid: f"{title} monograph" for mid, title in rows}


def _user_names(ids: set[int]) -> dict[int, str]:
    rows = db.session.execute(sa.select(User.id, User.legal_name, User.email).where(User.id.in_(ids)))
    return {uid: _user_name(name, email) for uid, name, email in rows}


def _order_names(ids: set[int]) -> dict[int, str]:
    rows = db.session.execute(sa.select(Order.id, Order.number, User.legal_name)
                              .join(User, Order.customer_id == User.id).where(Order.id.in_(ids)))
    return {oid: f"order {number} of {name}" for oid, number, name in rows}


def _address_names(ids: set[int]) -> dict[int, str]:
    rows = db.session.execute(sa.select(Address.id, Address.city, User.legal_name)
                              .join(User, Address.user_id == User.id).where(Address.id.in_(ids)))
    return {aid: f"an address in {city} of {name}" for aid, city, name in rows}


def _prescription_names(may_see_patients: bool) -> Callable[[set[int]], dict[int, str]]:
    def names(ids: set[int]) -> dict[int, str]:
        if not may_see_patients:
            return {rid: f"prescription #{rid}" for rid in ids}
        rows = db.session.execute(sa.select(Prescription.id, User.legal_name)
                                  .join(User, Prescription.customer_id == User.id)
                                  .where(Prescription.id.in_(ids)))
        return {rid: f"prescription #{rid} of {name}" for rid, name in rows}
    return names


def _names(events: Sequence[AuditEvent], may_see_patients: bool) -> dict[tuple[str, str], str]:
    """(object_type, object_id) -> the record's name, for every record the page is about: one query per
    kind of record present. Prescriptions name their patient only to a viewer who may see patients."""
    loaders: dict[str, Callable[[set[int]], dict[int, str]]] = {
        "package": _package_names, "strength": _strength_names, "product": _product_names,
        "monograph": _monograph_names, "user": _user_names, "order": _order_names, "address": _address_names,
        "prescription": _prescription_names(may_see_patients)}
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.object_type in loaders and event.object_id:
            wanted.setdefault(event.object_type, set()).add(event.object_id)
        if event.action == "patient_profile.viewed":  # names its prescription in the details
            wanted.setdefault("prescription", set()).add(str(event.details_dict.get("prescription_id", "")))
    names: dict[tuple[str, str], str] = {}
    for object_type, ids in wanted.items():
        for object_id, name in loaders[object_type](_int_ids(ids)).items():
            names[(object_type, str(object_id))] = name
    return names


def _about(event: AuditEvent, names: Mapping[tuple[str, str], str]) -> str:
    if not event.object_type:
        return ""
    if event.object_type == "price_file":
        return f"the file {event.object_id}" if event.object_id else "a price file"
    if event.object_type == "profile_entry":
        return "a health entry"
    if event.object_type == "stock":
        return ""
    if event.object_type == "user" and event.object_id and event.object_id == str(event.actor_id):
        return "their own account"
    name = names.get((event.object_type, event.object_id or ""))
    if name:
        return name
    noun = event.object_type.replace("_", " ")
    return f"{noun} #{event.object_id} (no longer exists)" if event.object_id else noun


# Details ------------------------------------------------------------------------------------------------

def _value(key: str, value: Any, currency: str) -> str:
    if value is None or value == "":
        return "—"
    if key.endswith("_cents") and isinstance(value, int) and not isinstance(value, bool):
        return money.format_cents(value, currency)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_value(k, v, currency)}" for k, v in value.items())
    return str(value)


def _label(key: str) -> str:
    return key.removesuffix("_cents").replace("_", " ").capitalize()


def _pairs(details: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, old key, new key) for each before/after pair in the details."""
    pairs = []
    for key in details:
        if key.startswith("old_") and f"new_{key[4:]}" in details:
            pairs.append((_label(key[4:]), key, f"new_{key[4:]}"))
        elif key.endswith("_before") and f"{key[:-7]}_after" in details:
            pairs.append((_label(key[:-7]), key, f"{key[:-7]}_after"))
    if "before" in details and "after" in details:
        pairs.append(("Setting", "before", "after"))
    return pairs


def facts(event: AuditEvent, currency: str) -> list[tuple[str, str]]:
    """The details as (label, value) lines: money as money, a before/after pair as "old → new"."""
    details = event.details_dict
    if event.action == SIGNED_IN:
        return [("With", SIGN_IN_METHODS.get(details.get("method"), str(details.get("method"))))]
    lines = [(label, f"{_value(old, details[old], currency)} → {_value(new, details[new], currency)}")
             for label, old, new in _pairs(details)]
    paired = {key for _, old, new in _pairs(details) for key in (old, new)}
    if "scheduled_change" in details:
        lines.append(("Applied", "as scheduled"))
    for key, value in details.items():
        if key in paired or key in QUIET_KEYS or (key == "units" and event.object_type == "package"):
            continue
        if value is None or value == "" or value == []:
            continue  # an empty reason or note says nothing
        if key == "from_status" and value in STATUS_LABELS:
            value = STATUS_LABELS[value]
        if key == "prescription_id":
            continue  # named in place of the record
        lines.append((_label(key), _value(key, value, currency)))
    return lines


def _raw(event: AuditEvent) -> str:
    record = {"id": event.id, "at": event.at.isoformat() + "Z", "action": event.action,
              "actor_id": event.actor_id, "actor_email": event.actor_email, "actor_role": event.actor_role,
              "object_type": event.object_type, "object_id": event.object_id, "ip": event.ip,
              "details": event.details_dict}
    return json.dumps(record, indent=2, ensure_ascii=False, default=str)


def _entry(event: AuditEvent, names: Mapping[tuple[str, str], str], currency: str,
           password_step: AuditEvent | None) -> Entry:
    about = _about(event, names)
    if event.action == "patient_profile.viewed":
        prescription = names.get(("prescription", str(event.details_dict.get("prescription_id", ""))))
        about = f"{about}, for {prescription}" if prescription else about
    raw = ([_raw(password_step)] if password_step is not None else []) + [_raw(event)]
    return Entry(event, action_words(event.action), kind_of(event.action), about, facts(event, currency), raw)
