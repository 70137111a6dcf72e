"""Admin price services: preview, validation, saving with a version check, package sizes, scheduled
changes and history (the CSV export and import are in prices_csv).

Every write takes the write transaction first (common.write_transaction), records a PriceChange row
and an audit row per package it changes, and commits once; a refusal rolls back and changes nothing.
A price save writes only the prices the admin typed over (each field carries the price it started
from), each as a conditional UPDATE on the version the editor read; if any package of the strength
changed meanwhile nothing is saved, and the editor is told who changed which price and when.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from sqlalchemy.orm import joinedload, selectinload

from shop import audit, money
from shop.accounts.models import User
from shop.admin.common import Refused, refuse, write_transaction
from shop.audit import utcnow
from shop.catalog.models import Package, Product, Strength
from shop.catalog.price_models import PriceChange
from shop.catalog.pricing import PackageRow, package_rows
from shop.extensions import db
from shop.numbers import parse_int

MAX_UNITS = 10_000
REASON_MAX = 200
HISTORY_LIMIT = 50
MAX_SCHEDULE_DAYS = 366
KIND_LABELS = {"price": "Price changed", "added": "Package added", "retired": "Retired",
               "restored": "Restored"}


class PriceConflict(Refused):
    """A package changed after the editor read it; the editor must review the new state."""


def price_field(package_id: int) -> str:
    return f"price_{package_id}"


def version_field(package_id: int) -> str:
    return f"version_{package_id}"


def original_field(package_id: int) -> str:
    """The hidden field with the price the package's field started from."""
    return f"original_{package_id}"


def plain_amount(cents: int) -> str:
    """Cents as a plain amount for an input or a CSV: 40546 -> "405.46"."""
    return f"{cents // 100}.{cents % 100:02d}"


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def parse_typed_price(text: str | None) -> int:
    """:raise money.InvalidPrice: with a message fit to show beside the field."""
    if text is None or not str(text).strip():
        raise money.InvalidPrice("Enter a price.")
    try:
        return money.parse_price(text)
    except money.InvalidPrice as error:
        raise money.InvalidPrice(_sentence(str(error))) from None


# Reading -------------------------------------------------------------------------------------------

# Loads overwrite what the session already holds (populate_existing): a service compares what it
# loads with what the editor saw, so it must not be handed objects read earlier in the request.

def load_strength(strength_id: int) -> Strength | None:
    stmt = (sa.select(Strength).where(Strength.id == strength_id)
            .options(joinedload(Strength.product), selectinload(Strength.packages))
            .execution_options(populate_existing=True))
    return db.session.scalars(stmt).first()


def load_package(package_id: int) -> Package | None:
    stmt = (sa.select(Package).where(Package.id == package_id)
            .options(joinedload(Package.strength).joinedload(Strength.product))
            .execution_options(populate_existing=True))
    return db.session.scalars(stmt).first()


def load_change(change_id: int) -> PriceChange | None:
    return db.session.get(PriceChange, change_id)


@dataclass(frozen=True)
class StrengthSummary:
    strength: Strength
    scheduled: int  # pending scheduled changes


@dataclass(frozen=True)
class ProductSummary:
    product: Product
    strengths: list[StrengthSummary]


def overview() -> list[ProductSummary]:
    """Every product and strength (on sale or not) with its packages and pending changes."""
    products = db.session.scalars(
        sa.select(Product).order_by(Product.name)
        .options(selectinload(Product.strengths).selectinload(Strength.packages))).all()
    pending = dict(db.session.execute(
        sa.select(Package.strength_id, sa.func.count(PriceChange.id))
        .join(PriceChange, PriceChange.package_id == Package.id)
        .where(PriceChange.applied_at.is_(None), PriceChange.cancelled_at.is_(None))
        .group_by(Package.strength_id)).all())
    return [ProductSummary(p, [StrengthSummary(s, pending.get(s.id, 0)) for s in p.strengths])
            for p in products]


def history(strength_id: int, limit: int = HISTORY_LIMIT) -> list[PriceChange]:
    """Applied changes of the strength's packages, newest first."""
    return list(db.session.scalars(
        sa.select(PriceChange).join(Package).where(Package.strength_id == strength_id,
                                                   PriceChange.applied_at.is_not(None))
        .order_by(PriceChange.applied_at.desc(), PriceChange.id.desc()).limit(limit)
        .options(joinedload(PriceChange.package), joinedload(PriceChange.actor))))


def scheduled(strength_id: int) -> list[PriceChange]:
    """Pending scheduled changes of the strength's packages, soonest first."""
    return list(db.session.scalars(
        sa.select(PriceChange).join(Package).where(Package.strength_id == strength_id,
                                                   PriceChange.applied_at.is_(None),
                                                   PriceChange.cancelled_at.is_(None))
        .order_by(PriceChange.effective_at, PriceChange.id)
        .options(joinedload(PriceChange.package), joinedload(PriceChange.actor))))


# Preview -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    rows: list[PackageRow]  # the product page's rows, with the typed prices
    warnings: list[str]
    changed: frozenset[int] = field(default_factory=frozenset)  # package ids with a new price


def parse_prices(strength: Strength, typed: Mapping[int, str | None]) -> dict[int, int]:
    """Typed prices of the strength's packages in cents. :raise Refused: per price field."""
    packages = {p.id: p for p in strength.packages}
    errors: dict[str, str] = {}
    prices: dict[int, int] = {}
    for package_id, text in typed.items():
        if package_id not in packages:
            continue
        try:
            prices[package_id] = parse_typed_price(text)
        except money.InvalidPrice as error:
            errors[price_field(package_id)] = str(error)
    if errors:
        raise Refused(errors)
    return prices


def per_pill_warnings(lines: Sequence[money.PriceLine], currency: str) -> list[str]:
    """A bigger package that costs more per pill than a smaller one is allowed, but probably a typo."""
    ordered = sorted(lines, key=lambda line: line.units)
    warnings = []
    for i, small in enumerate(ordered):
        for big in ordered[i + 1:]:
            if big.units > small.units and (money.per_unit_exact(big.price_cents, big.units)
                                            > money.per_unit_exact(small.price_cents, small.units)):
                big_pill = money.format_cents(big.per_unit_cents, currency)
                small_pill = money.format_cents(small.per_unit_cents, currency)
                warnings.append(f"The {big.units} pack costs more per pill ({big_pill}) than the "
                                f"{small.units} pack ({small_pill}).")
    return warnings


def preview(strength: Strength, prices: Mapping[int, int], low_stock_packs: int) -> Preview:
    """The product page's package table with `prices` (package id -> cents) in place of the
    current ones. It is built by the product page's own functions (package_rows, price_table), so
    what the admin previews is what customers will see."""
    rows = package_rows(strength, low_stock_packs)
    pairs = [(row.package.units, prices.get(row.package.id, row.package.price_cents)) for row in rows]
    lines = money.price_table(pairs)
    rows = [replace(row, price=line) for row, line in zip(rows, lines, strict=True)]
    changed = frozenset(row.package.id for row in rows if row.price.price_cents != row.package.price_cents)
    currency = rows[0].currency if rows else "USD"
    return Preview(rows, per_pill_warnings(lines, currency), changed)


# Saving prices --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PriceEdit:
    package_id: int
    price_text: str | None
    seen_version: int
    # The price the field started from (the form's hidden "original"); None: count it as edited.
    original_text: str | None = None

    @property
    def edited(self) -> bool:
        """Whether the admin changed this field: only edited fields are ever saved, so a field left
        alone never writes back a price it showed before someone else changed it."""
        if self.original_text is None:
            return True
        try:
            return parse_typed_price(self.price_text) != parse_typed_price(self.original_text)
        except money.InvalidPrice:
            return True


@dataclass(frozen=True)
class SaveResult:
    changed: int
    effective_at: dt.datetime | None  # set when the change was scheduled rather than applied
    warnings: list[str]


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise Refused({"reason": f"At most {REASON_MAX} characters."})
    return reason


def _check_effective_at(effective_at: dt.datetime | None, now: dt.datetime) -> None:
    if effective_at is None:
        return
    if effective_at <= now:
        raise Refused({"effective_at": "Choose a time in the future, or leave it empty to apply the "
                                          "change now."})
    if effective_at > now + dt.timedelta(days=MAX_SCHEDULE_DAYS):
        raise Refused({"effective_at": "Choose a time within a year."})


def record_change(package: Package, kind: str, old: int | None, new: int, actor: User | None,
                   reason: str, now: dt.datetime, *, effective_at: dt.datetime | None = None) -> PriceChange:
    scheduled_change = effective_at is not None
    change = PriceChange(package_id=package.id, kind=kind, old_price_cents=old, new_price_cents=new,
                         reason=reason, actor_id=getattr(actor, "id", None), created_at=now,
                         effective_at=effective_at or now, applied_at=None if scheduled_change else now)
    db.session.add(change)
    return change


def _locked_state(package_ids: Sequence[int]) -> dict[int, sa.Row]:
    """The committed state of packages, read past the session's identity map and held until the
    transaction ends (PostgreSQL), so the versions compared stay the versions written against."""
    columns = (Package.id, Package.price_cents, Package.version, Package.active, Package.currency)
    rows = db.session.execute(sa.select(*columns).where(Package.id.in_(package_ids))
                              .order_by(Package.id).with_for_update())
    return {row.id: row for row in rows}


def latest_changes(package_ids: Sequence[int]) -> dict[int, PriceChange]:
    """Each package's latest applied change (price, retirement...), with who made it: one query."""
    newest = (sa.select(PriceChange.package_id, sa.func.max(PriceChange.id).label("id"))
              .where(PriceChange.package_id.in_(package_ids), PriceChange.applied_at.is_not(None))
              .group_by(PriceChange.package_id).subquery())
    changes = db.session.scalars(sa.select(PriceChange).join(newest, newest.c.id == PriceChange.id)
                                 .options(joinedload(PriceChange.actor)))
    return {change.package_id: change for change in changes}


def _who_and_when(change: PriceChange | None) -> str:
    if change is None or change.applied_at is None:
        return "by someone else"
    who = change.actor.email if change.actor else "someone else"
    scheduled_note = " (scheduled)" if change.applied_at != change.created_at else ""
    return f"by {who} at {change.applied_at:%Y-%m-%d %H:%M} UTC{scheduled_note}"


def _what_changed(change: PriceChange | None, state: sa.Row) -> str:
    if change is not None and change.kind in ("retired", "restored"):
        return change.kind
    if change is not None and change.kind == "price" and change.old_price_cents is not None:
        return (f"{money.format_cents(change.old_price_cents, state.currency)} → "
                f"{money.format_cents(change.new_price_cents, state.currency)}")
    return f"now {money.format_cents(state.price_cents, state.currency)}"


def conflict_message(price_cents: int, currency: str, change: PriceChange | None = None) -> str:
    """For a field the admin edited: their price stays in it, to save again deliberately."""
    now = money.format_cents(price_cents, currency)
    return (f"This price was changed {_who_and_when(change)} meanwhile: now {now}. Your price is still in "
            "the field: review it and save again.")


def untouched_message(state: sa.Row, change: PriceChange | None) -> str:
    """For a field the admin left alone: the form shows the current price from now on."""
    return (f"Changed meanwhile {_who_and_when(change)}: {_what_changed(change, state)}. This field now "
            "shows the current price.")


def save_prices(strength_id: int, edits: Sequence[PriceEdit], actor: User, *, reason: str = "",
                effective_at: dt.datetime | None = None, now: dt.datetime | None = None) -> SaveResult:
    """Apply (or, with a future `effective_at`, schedule) the prices the admin edited.

    Only edits whose typed price differs from the price their field started from (PriceEdit.edited)
    and from the current one are written. The prices of a strength are set against each other (the
    per-pill comparison), so if any package in the form changed since the editor read it (its
    version moved on), nothing is saved and each such field is named, with who changed it and when.
    Each write is also a conditional UPDATE on the version the editor read.

    :raise LookupError: no such strength.
    :raise Refused: a typed value is invalid (per field).
    :raise PriceConflict: a package changed since the editor read it (per price field).
    """
    now = now or utcnow()
    with write_transaction():
        strength = load_strength(strength_id)
        if strength is None:
            raise LookupError(strength_id)
        reason = _check_reason(reason)
        _check_effective_at(effective_at, now)
        packages = {p.id: p for p in strength.packages}
        edits = [e for e in edits if e.package_id in packages]
        prices = parse_prices(strength, {e.package_id: e.price_text for e in edits})
        states = _locked_state([e.package_id for e in edits])
        stale = {e.package_id for e in edits if states[e.package_id].version != e.seen_version}
        changes = latest_changes(sorted(stale)) if stale else {}
        conflicts: dict[str, str] = {}  # fields the admin edited that cannot be saved
        untouched: dict[str, str] = {}  # fields left alone whose package changed meanwhile
        changed: list[tuple[Package, int, int]] = []  # package, old, new
        for edit in edits:
            package, state, new = packages[edit.package_id], states[edit.package_id], prices[edit.package_id]
            field_name = price_field(package.id)
            if not edit.edited:
                if package.id in stale:
                    untouched[field_name] = untouched_message(state, changes.get(package.id))
                continue  # never written: a field left alone cannot undo someone else's change
            if new == state.price_cents:
                continue  # unchanged, or someone else set this very price meanwhile: nothing is lost
            if not state.active:
                conflicts[field_name] = ("This package was retired meanwhile; restore it before changing "
                                         "its price.")
                continue
            done = package.id not in stale
            if done and effective_at is None:  # scheduling does not touch the package
                done = db.session.execute(
                    sa.update(Package)
                    .where(Package.id == package.id, Package.version == edit.seen_version, Package.active)
                    .values(price_cents=new, version=Package.version + 1)
                    .execution_options(synchronize_session=False)).rowcount == 1
            if not done:
                conflicts[field_name] = conflict_message(state.price_cents, state.currency,
                                                         changes.get(package.id))
                continue
            changed.append((package, state.price_cents, new))
        # The prices of a strength are set against each other (per pill): an edit made beside a
        # package that changed meanwhile is refused too, so the admin sees the new table first.
        if conflicts or (untouched and changed):
            raise PriceConflict(conflicts | untouched)
        for package, old, new in changed:
            record_change(package, "price", old, new, actor, reason, now, effective_at=effective_at)
            audit.record("price.scheduled" if effective_at else "price.changed", object_type="package",
                         object_id=package.id, actor=actor, strength_id=strength.id, units=package.units,
                         old_price_cents=old, new_price_cents=new, reason=reason,
                         **({"effective_at": effective_at.isoformat()} if effective_at else {}))
        saved = {package.id: new for package, _, new in changed}
        warnings = preview(strength, saved, low_stock_packs=0).warnings  # stock plays no part in them
        db.session.commit()
    return SaveResult(len(changed), effective_at, warnings)


# Package sizes ---------------------------------------------------------------------------------------

def parse_units(text: str | int | None) -> int:
    raw = str(text if text is not None else "").strip()
    if not raw:
        raise ValueError("Enter the number of tablets or capsules in the package.")
    units = parse_int(raw, minimum=1, maximum=MAX_UNITS)
    if units is None:
        raise ValueError(f"Enter a whole number from 1 to {MAX_UNITS:,}.")
    return units


def add_package(strength_id: int, units_text: str | None, price_text: str | None, actor: User, *,
                reason: str = "", now: dt.datetime | None = None) -> Package:
    """A new package size, on sale at once. :raise LookupError, Refused: nothing is saved."""
    now = now or utcnow()
    with write_transaction():
        strength = db.session.scalars(sa.select(Strength).where(Strength.id == strength_id)
                                      .with_for_update()).first()
        if strength is None:
            raise LookupError(strength_id)
        errors: dict[str, str] = {}
        units = price = 0
        try:
            units = parse_units(units_text)
        except ValueError as error:
            errors["units"] = str(error)
        try:
            price = parse_typed_price(price_text)
        except money.InvalidPrice as error:
            errors["price"] = str(error)
        try:
            reason = _check_reason(reason)
        except Refused as error:
            errors.update(error.errors)
        existing = None if "units" in errors else db.session.scalars(
            sa.select(Package).where(Package.strength_id == strength_id, Package.units == units)).first()
        if existing is not None:
            errors["units"] = (f"There is already a {units} pack." if existing.active else
                               f"A {units} pack exists but is retired: restore it instead.")
        if errors:
            raise Refused(errors)
        package = Package(strength_id=strength_id, units=units, price_cents=price, active=True, version=1)
        db.session.add(package)
        try:
            db.session.flush()
            record_change(package, "added", None, price, actor, reason, now)
            audit.record("package.added", object_type="package", object_id=package.id, actor=actor,
                         strength_id=strength_id, units=units, price_cents=price, reason=reason)
            db.session.commit()
        except sa.exc.IntegrityError:  # the same size added by a simultaneous request
            refuse({"units": f"There is already a {units} pack."})
    return package


def _set_active(package_id: int, seen_version: int, actor: User, *, active: bool,
                now: dt.datetime | None = None) -> Package:
    now = now or utcnow()
    with write_transaction():
        package = load_package(package_id)
        if package is None:
            raise LookupError(package_id)
        # The strength row is locked (PostgreSQL) so two retirements cannot both pass the
        # last-package check; SQLite's write lock already serialises them.
        db.session.execute(sa.select(Strength.id).where(Strength.id == package.strength_id).with_for_update())
        if not active:
            on_sale = db.session.scalar(sa.select(sa.func.count(Package.id)).where(
                Package.strength_id == package.strength_id, Package.active, Package.id != package.id))
            if package.active and not on_sale:
                name = f"{package.strength.product.name} {package.strength.label}"
                raise Refused({"package": (
                    f"The {package.units} pack is the last package on sale of {name}. Add another size "
                    "first, or take the strength off sale in the catalog.")})
        done = db.session.execute(
            sa.update(Package)
            .where(Package.id == package_id, Package.version == seen_version,
                   sa.not_(Package.active) if active else Package.active)
            .values(active=active, version=Package.version + 1)
            .execution_options(synchronize_session=False)).rowcount
        if not done:
            raise PriceConflict({"package": f"The {package.units} pack was changed by someone else "
                                            "meanwhile. Review it and try again."})
        kind = "restored" if active else "retired"
        record_change(package, kind, package.price_cents, package.price_cents, actor, "", now)
        audit.record(f"package.{kind}", object_type="package", object_id=package.id, actor=actor,
                     strength_id=package.strength_id, units=package.units)
        db.session.commit()
    return package


def retire_package(package_id: int, seen_version: int, actor: User, *,
                   now: dt.datetime | None = None) -> Package:
    """Take a package off sale (kept for history and orders). Refused for the strength's last
    package on sale: that would take the whole strength off sale, a catalog decision.

    :raise LookupError: no such package. :raise Refused, PriceConflict: nothing changes.
    """
    return _set_active(package_id, seen_version, actor, active=False, now=now)


def restore_package(package_id: int, seen_version: int, actor: User, *,
                    now: dt.datetime | None = None) -> Package:
    """Put a retired package back on sale at its last price. :raise LookupError, PriceConflict."""
    return _set_active(package_id, seen_version, actor, active=True, now=now)


# Scheduled changes ------------------------------------------------------------------------------------

def cancel_scheduled(change_id: int, actor: User, *, now: dt.datetime | None = None) -> PriceChange:
    """:raise LookupError: no such change. :raise Refused: already applied or cancelled."""
    now = now or utcnow()
    with write_transaction():
        change = load_change(change_id)
        if change is None:
            raise LookupError(change_id)
        done = db.session.execute(
            sa.update(PriceChange)
            .where(PriceChange.id == change_id, PriceChange.applied_at.is_(None),
                   PriceChange.cancelled_at.is_(None))
            .values(cancelled_at=now).execution_options(synchronize_session=False)).rowcount
        if not done:
            raise Refused({"change": "This scheduled change was already applied or cancelled."})
        audit.record("price.schedule_cancelled", object_type="package", object_id=change.package_id,
                     actor=actor, change_id=change.id, new_price_cents=change.new_price_cents,
                     effective_at=change.effective_at.isoformat())
        db.session.commit()
    return change


def apply_due_price_changes(now: dt.datetime | None = None) -> int:
    """Apply every scheduled price change whose time has come, oldest first; returns how many.

    Run by the worker. Each applied change bumps the package's version (so an editor open on the
    old price is told it changed) and records the price it replaced.
    """
    now = now or utcnow()
    pending = (PriceChange.applied_at.is_(None), PriceChange.cancelled_at.is_(None),
               PriceChange.effective_at <= now)
    # A plain read first: the worker runs this every few seconds and must not queue for SQLite's
    # write lock (behind checkouts) when nothing is due.
    if db.session.scalar(sa.select(PriceChange.id).where(*pending).limit(1)) is None:
        db.session.rollback()
        return 0
    with write_transaction():
        due = list(db.session.scalars(
            sa.select(PriceChange).where(*pending)
            .order_by(PriceChange.effective_at, PriceChange.id)
            .with_for_update(skip_locked=True)))  # two workers never apply one change twice
        for change in due:
            old = db.session.scalar(sa.select(Package.price_cents).where(Package.id == change.package_id)
                                    .with_for_update())
            db.session.execute(sa.update(Package).where(Package.id == change.package_id)
                               .values(price_cents=change.new_price_cents, version=Package.version + 1)
                               .execution_options(synchronize_session=False))
            change.old_price_cents, change.applied_at = old, now
            audit.record("price.changed", object_type="package", object_id=change.package_id, actor=None,
                         old_price_cents=old, new_price_cents=change.new_price_cents, reason=change.reason,
                         scheduled_change=change.id, scheduled_by=change.actor_id)
        db.session.commit()
    return len(due)
