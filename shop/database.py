"""Database engine settings: SQLite tuned for concurrent use, and the per-connection pragmas."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from flask import Flask, has_request_context
from sqlalchemy import event
from sqlalchemy.engine import Engine

from shop.extensions import db

log = logging.getLogger(__name__)

IMMEDIATE_OPTION = "shop_sqlite_immediate"
TRANSACTION_INFO = "shop_sqlite_transaction"  # per connection: how the open transaction began
_READS = frozenset({"SELECT", "WITH"})
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})
_worker_checked: ContextVar[bool] = ContextVar("shop_worker_checked", default=False)


class WriteWithoutLock(RuntimeError):
    """A transaction wrote after reading without begin_write(): on SQLite it fails with "database
    is locked" whenever another connection commits in between (the worker, another request)."""


def begin_write() -> None:
    """Make the session's transaction a write transaction, before a service reads what it changes.

    On SQLite a transaction that reads and then writes fails at once with "database is locked"
    when another connection wrote in between (the lock cannot be upgraded), whatever the busy
    timeout. So a service that writes ends any read-only transaction the request had open and
    starts a new one with BEGIN IMMEDIATE, which waits its turn for the write lock. PostgreSQL
    needs nothing: its row locks and conditional UPDATEs do the job.
    """
    session = db.session()  # the request's Session behind the scoped proxy
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            return  # already writing in this transaction; restarting it would lose the changes
        connection = session.connection()
        if connection.get_execution_options().get(IMMEDIATE_OPTION):
            return
        session.commit()  # ends the read snapshot; nothing is pending
    session.connection(execution_options={IMMEDIATE_OPTION: True})


@contextmanager
def worker_checked() -> Iterator[None]:
    """Check the worker's transactions like a request's (see _configure_sqlite)."""
    token = _worker_checked.set(True)
    try:
        yield
    finally:
        _worker_checked.reset(token)


LIKE_ESCAPE = "\\"


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def is_sqlite(uri: str) -> bool:
    return uri.startswith("sqlite")


def engine_options(app: Flask) -> dict[str, Any]:
    """Engine options for the configured database.

    SQLite: the driver's own transaction handling is switched off so that SQLAlchemy's BEGIN is the
    one that counts, and a connection waits (busy timeout) instead of failing with "database is
    locked" while another writer holds the lock.
    """
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    options: dict[str, Any] = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
    if is_sqlite(uri):
        connect_args = dict(options.get("connect_args", {}))
        connect_args.setdefault("timeout", app.config["SQLITE_BUSY_TIMEOUT_SECONDS"])
        connect_args.setdefault("check_same_thread", False)
        options["connect_args"] = connect_args
    else:
        options.setdefault("pool_pre_ping", True)
    return options


def init_app(app: Flask) -> None:
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app)
    db.init_app(app)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine, app.config["SQLITE_BUSY_TIMEOUT_SECONDS"], strict=app.testing)


def _configure_sqlite(engine: Engine, busy_timeout_seconds: int, *, strict: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see the "begin" hook below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds) * 1000}")
        if engine.url.database not in (None, "", ":memory:"):
            # WAL lets readers and one writer proceed together.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # With the driver's implicit transactions off, SQLAlchemy opens each one explicitly, so
        # reads inside a transaction see one consistent snapshot. A write transaction (see
        # begin_write) takes the write lock up front, waiting on the busy timeout.
        immediate = connection.get_execution_options().get(IMMEDIATE_OPTION)
        connection.info[TRANSACTION_INFO] = {"locked": bool(immediate), "read": False}
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "before_cursor_execute")
    def _on_execute(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The rule of begin_write, checked where it matters: a request's or the worker's plain
        # BEGIN transaction that has read must not write. Tests fail on it; elsewhere it is logged.
        state = connection.info.get(TRANSACTION_INFO)
        if state is None or state["locked"]:
            return
        keyword = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if keyword in _READS:
            state["read"] = True
        elif keyword in _WRITES:
            state["locked"] = True  # a first write takes the lock (waiting its turn); later ones hold it
            if state["read"] and (has_request_context() or _worker_checked.get()):
                problem = f"write after a read without begin_write(): {statement.strip()[:80]}"
                if strict:
                    raise WriteWithoutLock(problem)
                log.error(problem, stack_info=True)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection: Any) -> None:
        connection.info.pop(TRANSACTION_INFO, None)
