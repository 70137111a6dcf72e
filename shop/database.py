"""Database engine settings: SQLite tuned for concurrent use, and the per-connection pragmas."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from shop.extensions import db

IMMEDIATE_OPTION = "shop_sqlite_immediate"


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
            _configure_sqlite(engine, app.config["SQLITE_BUSY_TIMEOUT_SECONDS"])


def _configure_sqlite(engine: Engine, busy_timeout_seconds: int) -> None:
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
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
