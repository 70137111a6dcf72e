"""The write-lock rule on SQLite (shop/database.py): a transaction that writes takes the write lock
(begin_write) before its first read, and holds it only for its database work.

A request or worker transaction that writes after reading without the lock fails in tests, so a
write path that forgets begin_write is found by the test that exercises it, not by a customer beside
the worker (tests/test_worker_beside.py). Slow work (password hashing) happens before the lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop import audit
from shop.accounts.models import User
from shop.accounts.passwords import verify_password
from shop.database import IMMEDIATE_OPTION, WriteWithoutLock, begin_write, worker_checked
from shop.extensions import db
from tests.conftest import TEST_DB, TEST_PASSWORD, csrf_token

pytestmark = pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite's write lock; PostgreSQL has row locks")


def read_then_audit() -> None:
    db.session.scalar(sa.select(sa.func.count()).select_from(User))
    audit.record("test.written", object_type="user", object_id=1)
    db.session.flush()


def test_a_request_that_writes_after_reading_without_the_lock_fails(app: Flask) -> None:
    with app.test_request_context():
        with pytest.raises(WriteWithoutLock, match="without begin_write"):
            read_then_audit()
        db.session.rollback()
        # The same work with the lock taken first is fine, and so is a write with no read before it.
        begin_write()
        read_then_audit()
        db.session.commit()
        audit.record("test.written_first", object_type="user", object_id=1)
        db.session.commit()
        db.session.remove()


def test_the_worker_is_held_to_the_rule_and_scripts_are_not(app: Flask) -> None:
    with app.app_context():
        with worker_checked(), pytest.raises(WriteWithoutLock):
            read_then_audit()
        db.session.rollback()
        read_then_audit()  # a test fixture or a one-off script in an app context: not checked
        db.session.rollback()
        db.session.remove()


@contextmanager
def locked_spans(app: Flask) -> Iterator[list[float]]:
    """The durations of the write transactions (BEGIN IMMEDIATE to commit or rollback) run inside."""
    spans: list[float] = []
    opened: dict[int, float] = {}
    with app.app_context():
        engine = db.engine

    def on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(IMMEDIATE_OPTION):
            opened[id(connection.connection.dbapi_connection)] = time.perf_counter()

    def on_end(connection: sa.Connection) -> None:
        started = opened.pop(id(connection.connection.dbapi_connection), None)
        if started is not None:
            spans.append(time.perf_counter() - started)

    listeners = (("begin", on_begin), ("commit", on_end), ("rollback", on_end))
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        yield spans
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)


def test_password_hashing_does_not_hold_the_write_lock(
    app: Flask, users: dict[str, int], password_hash: str, signed_in: Callable[[str], FlaskClient]
) -> None:
    started = time.perf_counter()
    verify_password(password_hash, TEST_PASSWORD)
    one_hash = time.perf_counter() - started  # scrypt: slow on purpose

    visitor = app.test_client()
    with locked_spans(app) as spans:
        for password in ("a wrong password, twice over", TEST_PASSWORD):
            visitor.post("/account/sign-in", data={
                "email": "customer@example.com", "password": password, "csrf_token": csrf_token(visitor)})
        customer = signed_in("other_customer")
        changed = customer.post("/account/password", data={
            "current_password": TEST_PASSWORD, "new_password": "a brand new passphrase 7",
            "csrf_token": csrf_token(customer, "/account/password")})
    assert changed.status_code == 302
    assert visitor.get("/account").status_code == 200  # signed in
    assert spans, "the sign-ins and the change took the write lock"
    # Every hash (two per password change) ran before its transaction took the lock.
    assert max(spans) < one_hash / 2, (spans, one_hash)
