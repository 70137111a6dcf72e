"""What the admin services share: refusing a change, the write transaction, and finding the row a
change is about; and, for their routes, a 404 for what a lookup did not find.

A refusal rolls the service's transaction back before it raises, so nothing the service did is kept;
the route shows each message beside its form field (shop.form_errors.apply_errors).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import sqlalchemy as sa
from flask import abort

from shop.database import begin_write
from shop.extensions import db

T = TypeVar("T")


class Refused(Exception):
    """A change refused, having changed nothing; `errors` maps form field names to messages (one whose
    name the form lacks is flashed)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def refuse(errors: dict[str, str]) -> NoReturn:
    """Roll back what the service did, then :raise Refused: with `errors`."""
    db.session.rollback()
    raise Refused(errors)


@contextmanager
def write_transaction() -> Iterator[None]:
    """begin_write() first; if the block raises, the transaction is rolled back and the error goes on.
    The block commits itself."""
    begin_write()
    try:
        yield
    except Exception:
        db.session.rollback()
        raise


def flush_or_refuse(conflict: dict[str, str]) -> None:
    """Flush (a new row gets its id); a unique constraint hit by a simultaneous edit becomes the
    `conflict` refusal."""
    try:
        db.session.flush()
    except sa.exc.IntegrityError:
        refuse(conflict)


def commit_or_refuse(conflict: dict[str, str]) -> None:
    """Commit; a unique constraint hit by a simultaneous edit becomes the `conflict` refusal."""
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        refuse(conflict)


def existing(model: type[T], row_id: int, **options: Any) -> T:
    """The row with this id, read in the service's transaction.

    :raise LookupError: no such row, having rolled back.
    """
    row = db.session.get(model, row_id, **options)
    if row is None:
        db.session.rollback()
        raise LookupError(row_id)
    return row


def or_404(found: T | None) -> T:
    """For routes: what a lookup found. :raise 404: it found nothing."""
    if found is None:
        abort(404)
    return found
