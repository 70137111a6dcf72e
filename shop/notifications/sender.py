"""Sending the outbox: mail backends and `send_pending`, which the worker runs.

Delivery is at least once. Each message is claimed with a conditional UPDATE (a short lease in
`locked_until`) before it is sent, so two workers never send the same message at the same time.
A send that fails leaves the message pending: `attempts` goes up, `last_error` says why, and
`next_attempt_at` puts the next try off by an exponential backoff. After MAX_ATTEMPTS failures the
message is left unsent, with its error, for a person to look at; nothing is ever deleted.

A worker that dies between sending and recording the send leaves the lease to lapse; the message is
then sent again. That is the one way a message can arrive twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import sqlalchemy as sa
from flask import Flask

from shop.audit import utcnow
from shop.database import begin_write
from shop.extensions import db
from shop.notifications.models import OutboxMessage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
BACKOFF_CAP_MINUTES = 60
# How long a claim keeps other workers off a message. Longer than any send can take: each SMTP step
# (connect, EHLO, STARTTLS, login, MAIL, RCPT, DATA) waits at most the mailer's timeout.
LEASE = dt.timedelta(minutes=5)
ERROR_MAX_CHARS = 500


class Mailer(Protocol):
    def send(self, *, to: str, subject: str, body: str) -> None:
        """Deliver one plain-text message; raise on any failure."""


class SMTPMailer:
    """Sends through an SMTP server, one connection per message."""

    def __init__(self, host: str, port: int, sender: str, username: str | None = None,
                 password: str | None = None, starttls: bool = False, timeout: float = 10) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    def build(self, *, to: str, subject: str, body: str) -> EmailMessage:
        # The default policy refuses CR or LF in a header value, so a subject or address can
        # never add headers of its own.
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        domain = self.sender.rpartition("@")[2].strip("> ") or None
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(body)
        return message

    def send(self, *, to: str, subject: str, body: str) -> None:
        message = self.build(to=to, subject=subject, body=body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)

    def __repr__(self) -> str:  # never shows the password
        tls = ", starttls" if self.starttls else ""
        return f"SMTPMailer({self.host}:{self.port}{tls}, from {self.sender})"


class LogMailer:
    """The development default: one log line per message (recipient, subject and size, never the body,
    which may hold a password link) and the message counts as sent; /dev/mailbox shows the text.

    The worker of `make run` sets up no logging, and Python then drops INFO lines: so when nothing is
    configured, this mailer's lines go to standard error themselves.
    """

    def __init__(self) -> None:
        if not log.hasHandlers():  # neither on this logger nor above it (Flask's, the root's)
            console = logging.StreamHandler()  # standard error
            console.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
            log.addHandler(console)
        if not log.isEnabledFor(logging.INFO):
            log.setLevel(logging.INFO)

    def send(self, *, to: str, subject: str, body: str) -> None:
        log.info("would send to %s: %s (%d characters; MAIL_BACKEND=log sends nothing, see /dev/mailbox)",
                 to, subject, len(body))

    def __repr__(self) -> str:
        return "LogMailer()"


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def mailer_for_app(app: Flask) -> Mailer:
    """The mailer the configuration asks for: MAIL_BACKEND "log" (default) or "smtp".

    SMTP settings: MAIL_HOST, MAIL_PORT, MAIL_SENDER (the From address; PHARMACY_EMAIL when unset),
    MAIL_USERNAME and MAIL_PASSWORD (no login when the username is empty), MAIL_STARTTLS, and
    MAIL_TIMEOUT_SECONDS.
    """
    config = app.config
    backend = str(config.get("MAIL_BACKEND") or "log").strip().lower()
    if backend == "log":
        return LogMailer()
    if backend == "smtp":
        sender = config.get("MAIL_SENDER") or config.get("PHARMACY_EMAIL")
        if not sender:
            raise RuntimeError("MAIL_BACKEND=smtp needs MAIL_SENDER, the From address")
        return SMTPMailer(
            host=str(config.get("MAIL_HOST") or "localhost"),
            port=int(config.get("MAIL_PORT") or 25),
            sender=str(sender),
            username=config.get("MAIL_USERNAME") or None,
            password=config.get("MAIL_PASSWORD") or None,
            starttls=_flag(config.get("MAIL_STARTTLS", False)),
            timeout=float(config.get("MAIL_TIMEOUT_SECONDS") or 10),
        )
    raise RuntimeError(f"MAIL_BACKEND={backend!r} is not one of: log, smtp")


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failure: 1, 2, 4 ... minutes, at most BACKOFF_CAP_MINUTES."""
    return dt.timedelta(minutes=min(2 ** max(attempts - 1, 0), BACKOFF_CAP_MINUTES))


def describe_error(error: BaseException) -> str:
    """Short text for `last_error`: the exception's class and message, never the message body."""
    text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 1] + "…"


def _due(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Pending, not given up on, its retry time come, and no live claim on it."""
    return sa.and_(
        OutboxMessage.sent_at.is_(None),
        OutboxMessage.attempts < MAX_ATTEMPTS,
        sa.or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        sa.or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
    )


def _claim(message_id: int, now: dt.datetime) -> sa.Row | None:
    """Take the lease on one message; None when it is no longer due (another worker has it)."""
    begin_write()
    row = db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, _due(now))
        .values(locked_until=now + LEASE)
        .returning(OutboxMessage.to_address, OutboxMessage.subject, OutboxMessage.body,
                   OutboxMessage.attempts)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    return row


def _record(message_id: int, **values: Any) -> None:
    begin_write()
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
        .values(locked_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def send_pending(mailer: Mailer, *, limit: int = 50, now: dt.datetime | None = None,
                 should_stop: Callable[[], bool] | None = None) -> tuple[int, int]:
    """Send up to `limit` due messages, oldest first. Returns (sent, failed).

    `now` fixes the clock (naive UTC); by default each step reads it afresh. `should_stop` is asked
    between messages, so a worker told to stop finishes the message in hand and no more.
    """

    def clock() -> dt.datetime:
        return now if now is not None else utcnow()

    ids = list(db.session.scalars(
        sa.select(OutboxMessage.id)
        .where(_due(clock()))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(limit)
    ))
    db.session.commit()  # end the read; each claim is a short write transaction of its own

    sent = failed = 0
    for message_id in ids:
        if should_stop is not None and should_stop():
            break
        row = _claim(message_id, clock())
        if row is None:
            continue
        try:
            mailer.send(to=row.to_address, subject=row.subject, body=row.body)
        except Exception as error:
            failed += 1
            attempts = row.attempts + 1
            give_up = attempts >= MAX_ATTEMPTS
            _record(message_id, attempts=attempts, last_error=describe_error(error),
                    next_attempt_at=None if give_up else clock() + backoff(attempts))
            if give_up:
                log.error("outbox message %s not sent after %d attempts, giving up: %s",
                          message_id, attempts, describe_error(error))
            else:
                log.warning("outbox message %s not sent (attempt %d), retrying after %s: %s",
                            message_id, attempts, backoff(attempts), describe_error(error))
            continue
        sent += 1
        _record(message_id, sent_at=clock())
    return sent, failed
