"""Optimistic version checks for records two admins may edit at once (products, monographs, monograph
sections, and a monograph's uses, dosing rows, safety entries and questions).

A save (save_versioned) names the version its form was read at and is a conditional UPDATE on it, so of
two admins saving one version only the first wins; the second is refused with EditConflict, told what
the other saved, instead of silently overwriting it. A removal (claim_for_removal) is checked the same
way: a row someone saved after the remover read it is kept, and the remover told.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import sqlalchemy as sa

from shop.admin.common import Refused
from shop.extensions import db

# The key a conflict's general message goes under: no form has such a field, so it is flashed.
CONFLICT = "conflict"


class EditConflict(Refused):
    """Someone else saved the record after the editor read it; nothing was changed. `version` is the
    record's version now: a form that carries it saves over the other change deliberately."""

    def __init__(self, errors: dict[str, str], version: int) -> None:
        super().__init__(errors)
        self.version = version


def _differences(obj: Any, values: Mapping[str, Any]) -> list[str]:
    return [name for name, new in values.items() if getattr(obj, name) != new]


def apply_changes(obj: Any, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the values that differ, applied to obj (for the audit row)."""
    changed = {}
    for name in _differences(obj, values):
        changed[name] = [getattr(obj, name), values[name]]
        setattr(obj, name, values[name])
    return changed


def _claim_version(model: Any, row_id: int, seen: int) -> bool:
    """Bump the row's version if it is still the one the editor read; False if someone saved meanwhile.

    One conditional UPDATE: of two saves of the same version only one can match it (on PostgreSQL the
    second waits for the first's row lock, then finds the version moved on). The caller then writes
    its changes in the same transaction, holding that row.
    """
    result = db.session.execute(
        sa.update(model).where(model.id == row_id, model.version == seen)
        .values(version=model.version + 1).execution_options(synchronize_session=False))
    return result.rowcount == 1


def _reload_stale(obj: Any) -> None:
    """Read obj as the other save left it, after a failed claim.

    :raise LookupError: it was removed meanwhile (its claim found no row), having rolled back.
    """
    model, row_id = type(obj), obj.id
    if db.session.scalar(sa.select(model.id).where(model.id == row_id)) is None:
        db.session.rollback()
        raise LookupError(row_id)
    db.session.refresh(obj)


def shown(value: Any) -> str:
    """A stored value as a conflict message quotes it."""
    if isinstance(value, bool):
        return "ticked" if value else "not ticked"
    if value is None or value == "":
        return "empty"
    text = value.isoformat() if isinstance(value, dt.date) else " ".join(str(value).split())
    return f"“{text[:80].rstrip()}…”" if len(text) > 80 else f"“{text}”"


def _refuse_stale(obj: Any, values: Mapping[str, Any], what: str, *, fields: Mapping[str, str] | None = None,
                  describe: Callable[[str, Any], str] | None = None) -> NoReturn:
    """Refuse a save whose version someone else moved on, saying what they saved in each field the
    editor's values differ from. `fields` maps column names to form field names where they differ.

    :raise EditConflict: with the version now, having changed nothing.
    :raise LookupError: the record was removed meanwhile.
    """
    _reload_stale(obj)  # what the other save stored
    errors = {CONFLICT: f"{what} was changed by someone else meanwhile. Nothing of yours is saved yet and "
                        "your text is still in the form: check the fields marked, then save again to "
                        "replace their changes with yours."}
    for name in _differences(obj, values):
        now = getattr(obj, name)
        text = describe(name, now) if describe else shown(now)
        errors[(fields or {}).get(name, name)] = f"Changed by someone else meanwhile; saved now: {text}."
    version = obj.version
    db.session.rollback()
    raise EditConflict(errors, version)


def save_versioned(obj: Any, values: Mapping[str, Any], seen_version: int, what: str, *,
                   fields: Mapping[str, str] | None = None,
                   describe: Callable[[str, Any], str] | None = None) -> dict[str, list[Any]] | None:
    """Apply `values` to obj, read by the editor at `seen_version`: {field: [old, new]} for the audit row.

    None, having rolled back, when the values equal the stored ones: nothing of anyone's would be lost,
    whatever the version. :raise EditConflict: someone else saved obj since `seen_version`.
    :raise LookupError: someone else removed obj meanwhile.
    """
    if not _differences(obj, values):
        db.session.rollback()
        return None
    if not _claim_version(type(obj), obj.id, seen_version):
        _refuse_stale(obj, values, what, fields=fields, describe=describe)
    db.session.refresh(obj)  # the row as this transaction now holds it
    return apply_changes(obj, values)


def claim_for_removal(obj: Any, seen_version: int, what: str) -> None:
    """Before removing obj, read by the remover at `seen_version`: hold it if nobody saved it since.

    The same conditional UPDATE as a save, so a save and a removal of one version cannot both win.
    :raise EditConflict: someone else saved obj since `seen_version`; nothing changed.
    :raise LookupError: someone else removed obj meanwhile.
    """
    if _claim_version(type(obj), obj.id, seen_version):
        return
    _reload_stale(obj)
    version = obj.version
    db.session.rollback()
    raise EditConflict({CONFLICT: f"{what} was changed by someone else after you opened the page, so it is "
                                  "not removed: check it as it is now, then remove it again if it should "
                                  "still go."}, version)
