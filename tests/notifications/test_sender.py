"""The outbox sender and worker, against a real SMTP server (aiosmtpd) on a loopback port."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import time_machine
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from flask import Flask

from config import BASE_DIR
from shop.audit import utcnow
from shop.cli import shop_cli
from shop.extensions import db
from shop.notifications import worker
from shop.notifications.models import OutboxMessage
from shop.notifications.sender import (
    LEASE,
    MAX_ATTEMPTS,
    LogMailer,
    SMTPMailer,
    backoff,
    mailer_for_app,
    send_pending,
)
from shop.notifications.services import enqueue

SENDER = "Clearwater Pharmacy <pharmacy@clearwater.example>"
T0 = dt.datetime(2030, 3, 4, 12, 0, tzinfo=dt.UTC)


# A real SMTP server ---------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")


class RecordingHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPServer:
    """aiosmtpd on a fixed free port, which can be stopped and started again on that port."""

    def __init__(self, **controller_options: object) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self.controller_options = controller_options
        self.controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     **self.controller_options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def mailer(self, **options: object) -> SMTPMailer:
        return SMTPMailer("127.0.0.1", self.port, SENDER, timeout=5, **options)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()


def queue(count: int = 1, **fields: object) -> list[int]:
    """Enqueue messages as a service would, committed; returns their ids."""
    for n in range(count):
        enqueue(to=fields.get("to", f"patient{n}@example.com"), subject=f"Message {n}",
                body=fields.get("body", f"Hello,\n\nthis is message {n}.\n\nClearwater"),
                kind="test", user_id=fields.get("user_id"))
    db.session.commit()
    return list(db.session.scalars(sa.select(OutboxMessage.id).order_by(OutboxMessage.id)))


def load(message_id: int) -> OutboxMessage:
    db.session.expire_all()
    message = db.session.get(OutboxMessage, message_id)
    assert message is not None
    return message


# Delivery -------------------------------------------------------------------------------------------


def test_pending_messages_are_delivered_and_marked_sent(
    app_ctx: Flask, users: dict[str, int], smtp_server: SMTPServer
) -> None:
    enqueue(to="customer@example.com", subject="Your prescription was approved",
            body="Dear Customer,\n\nyour prescription for Lisinopril 10 mg was approved.\n",
            kind="prescription.approved", user_id=users["customer"])
    enqueue(to="other@example.com", subject="Bestellung bezahlt – danke",
            body="Grüße aus der Apotheke: 2 × 10 mg.\n", kind="order.paid",
            user_id=users["other_customer"])
    db.session.commit()

    assert send_pending(smtp_server.mailer()) == (2, 0)

    first, second = smtp_server.received  # oldest first
    assert first.rcpt_tos == ["customer@example.com"]
    assert first.message["To"] == "customer@example.com"
    assert first.message["From"] == SENDER
    assert first.message["Subject"] == "Your prescription was approved"
    assert first.message["Message-ID"].endswith("@clearwater.example>")
    assert first.body == "Dear Customer,\n\nyour prescription for Lisinopril 10 mg was approved.\n"
    assert second.rcpt_tos == ["other@example.com"]
    assert second.message["Subject"] == "Bestellung bezahlt – danke"
    assert second.body == "Grüße aus der Apotheke: 2 × 10 mg.\n"

    messages = db.session.scalars(sa.select(OutboxMessage)).all()
    assert len(messages) == 2
    for message in messages:
        assert message.sent_at is not None
        assert abs(message.sent_at - utcnow()) < dt.timedelta(minutes=1)
        assert message.attempts == 0
        assert message.last_error is None
        assert message.locked_until is None

    # A second run finds nothing to send.
    assert send_pending(smtp_server.mailer()) == (0, 0)
    assert len(smtp_server.received) == 2


def test_limit_takes_the_oldest_first(app_ctx: Flask, smtp_server: SMTPServer) -> None:
    ids = queue(5)
    assert send_pending(smtp_server.mailer(), limit=3) == (3, 0)
    assert [r.message["Subject"] for r in smtp_server.received] == ["Message 0", "Message 1", "Message 2"]
    assert [load(i).sent_at is not None for i in ids] == [True, True, True, False, False]
    assert send_pending(smtp_server.mailer(), limit=3) == (2, 0)
    assert len(smtp_server.received) == 5


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_smtp_login(app_ctx: Flask) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        if auth_data.password == b"s3cret":
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # the server answers 535

    server = SMTPServer(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    server.start()
    try:
        [message_id] = queue(1)
        assert send_pending(server.mailer(username="shop", password="wrong")) == (0, 1)
        assert load(message_id).last_error.startswith("SMTPAuthenticationError")
        assert server.received == []

        later = utcnow() + dt.timedelta(minutes=2)
        assert send_pending(server.mailer(username="shop", password="s3cret"), now=later) == (1, 0)
        assert len(server.received) == 1
        assert logins[-1] == (b"shop", b"s3cret")
    finally:
        server.stop()


# Failures, backoff, giving up -------------------------------------------------------------------------


def test_failure_leaves_the_message_pending_and_retries_after_backoff(
    app_ctx: Flask, smtp_server: SMTPServer
) -> None:
    smtp_server.stop()
    with time_machine.travel(T0, tick=False) as traveller:
        [message_id] = queue(1, body="Confidential: your refill of Sertraline 50 mg is due.")

        assert send_pending(smtp_server.mailer()) == (0, 1)
        message = load(message_id)
        assert message.sent_at is None
        assert message.attempts == 1
        assert message.last_error.startswith("ConnectionRefusedError: ")
        assert "Sertraline" not in message.last_error
        assert message.next_attempt_at == T0.replace(tzinfo=None) + dt.timedelta(minutes=1)
        assert message.locked_until is None

        # The server is back, but the backoff has not run out: not even tried.
        smtp_server.start()
        traveller.shift(dt.timedelta(seconds=59))
        assert send_pending(smtp_server.mailer()) == (0, 0)
        assert smtp_server.received == []
        assert load(message_id).attempts == 1

        traveller.shift(dt.timedelta(seconds=2))
        assert send_pending(smtp_server.mailer()) == (1, 0)

    [received] = smtp_server.received
    assert received.body == "Confidential: your refill of Sertraline 50 mg is due.\n"
    message = load(message_id)
    assert message.sent_at == T0.replace(tzinfo=None) + dt.timedelta(seconds=61)
    assert message.attempts == 1  # the failures it took; the error stays for the record
    assert message.last_error.startswith("ConnectionRefusedError")


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 10)] == [
        dt.timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60, 60)
    ]


def test_repeated_failures_back_off_further(app_ctx: Flask) -> None:
    nobody = SMTPMailer("127.0.0.1", free_port(), SENDER, timeout=5)
    [message_id] = queue(1)
    now = utcnow()
    for attempt in range(1, 5):
        assert send_pending(nobody, now=now) == (0, 1)
        message = load(message_id)
        assert message.attempts == attempt
        assert message.next_attempt_at == now + backoff(attempt)
        assert send_pending(nobody, now=message.next_attempt_at - dt.timedelta(seconds=1)) == (0, 0)
        now = message.next_attempt_at


def test_gives_up_after_max_attempts_and_keeps_the_message(app_ctx: Flask) -> None:
    nobody = SMTPMailer("127.0.0.1", free_port(), SENDER, timeout=5)
    [message_id] = queue(1)
    db.session.execute(sa.update(OutboxMessage).values(attempts=MAX_ATTEMPTS - 1))
    db.session.commit()

    assert send_pending(nobody) == (0, 1)
    message = load(message_id)
    assert message.attempts == MAX_ATTEMPTS
    assert message.sent_at is None
    assert message.next_attempt_at is None
    assert message.last_error.startswith("ConnectionRefusedError")

    far_future = utcnow() + dt.timedelta(days=30)
    assert send_pending(nobody, now=far_future) == (0, 0)
    assert load(message_id).attempts == MAX_ATTEMPTS


def test_a_header_injection_is_refused_and_recorded(app_ctx: Flask, smtp_server: SMTPServer) -> None:
    enqueue(to="patient@example.com", subject="Hello\r\nBcc: attacker@example.net", body="x",
            kind="test")
    db.session.commit()
    assert send_pending(smtp_server.mailer()) == (0, 1)
    assert smtp_server.received == []
    [message] = db.session.scalars(sa.select(OutboxMessage)).all()
    assert message.last_error.startswith("ValueError")


def test_long_errors_are_cut_short(app_ctx: Flask) -> None:
    class Failing:
        def send(self, *, to: str, subject: str, body: str) -> None:
            raise RuntimeError("no " * 1000)

    [message_id] = queue(1)
    assert send_pending(Failing()) == (0, 1)
    error = load(message_id).last_error
    assert error.startswith("RuntimeError: no no")
    assert len(error) <= 500


# Claims -------------------------------------------------------------------------------------------


def test_a_message_claimed_by_another_worker_is_left_alone(
    app_ctx: Flask, smtp_server: SMTPServer
) -> None:
    [message_id] = queue(1)
    now = utcnow()
    db.session.execute(sa.update(OutboxMessage).values(locked_until=now + LEASE))
    db.session.commit()

    assert send_pending(smtp_server.mailer(), now=now) == (0, 0)
    assert smtp_server.received == []

    # A worker that died while holding the claim: once the lease lapses the message goes out.
    assert send_pending(smtp_server.mailer(), now=now + LEASE + dt.timedelta(seconds=1)) == (1, 0)
    assert len(smtp_server.received) == 1
    assert load(message_id).locked_until is None


def test_two_workers_at_once_send_each_message_exactly_once(
    app: Flask, app_ctx: Flask, smtp_server: SMTPServer
) -> None:
    count = 40
    queue(count)
    db.session.remove()
    barrier = threading.Barrier(2)
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with app.app_context():
                mailer = smtp_server.mailer()
                barrier.wait(timeout=10)
                results.append(send_pending(mailer, limit=count))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == 2
    assert sum(sent for sent, _ in results) == count
    assert sum(failed for _, failed in results) == 0

    subjects = [r.message["Subject"] for r in smtp_server.received]
    assert sorted(subjects) == sorted(f"Message {n}" for n in range(count))  # each once, no more
    unsent = db.session.scalar(sa.select(sa.func.count()).where(OutboxMessage.sent_at.is_(None)))
    assert unsent == 0


# Configuration -------------------------------------------------------------------------------------


def test_mailer_for_app_reads_the_configuration() -> None:
    assert isinstance(mailer_for_app(SimpleNamespace(config={})), LogMailer)
    assert isinstance(mailer_for_app(SimpleNamespace(config={"MAIL_BACKEND": "log"})), LogMailer)

    mailer = mailer_for_app(SimpleNamespace(config={
        "MAIL_BACKEND": "smtp", "MAIL_HOST": "mail.example.com", "MAIL_PORT": "587",
        "MAIL_SENDER": SENDER, "MAIL_USERNAME": "shop", "MAIL_PASSWORD": "s3cret",
        "MAIL_STARTTLS": "true",
    }))
    assert isinstance(mailer, SMTPMailer)
    assert (mailer.host, mailer.port, mailer.sender) == ("mail.example.com", 587, SENDER)
    assert (mailer.username, mailer.password, mailer.starttls) == ("shop", "s3cret", True)
    assert "s3cret" not in repr(mailer)

    plain = mailer_for_app(SimpleNamespace(config={
        "MAIL_BACKEND": "smtp", "MAIL_HOST": "localhost", "MAIL_PORT": 25,
        "PHARMACY_EMAIL": "pharmacist@clearwater.example", "MAIL_USERNAME": "", "MAIL_STARTTLS": "0",
    }))
    assert isinstance(plain, SMTPMailer)
    assert plain.sender == "pharmacist@clearwater.example"
    assert plain.username is None and plain.starttls is False

    with pytest.raises(RuntimeError, match="MAIL_BACKEND"):
        mailer_for_app(SimpleNamespace(config={"MAIL_BACKEND": "carrier-pigeon"}))


def test_log_mailer_logs_without_the_body(app_ctx: Flask, caplog: pytest.LogCaptureFixture) -> None:
    [message_id] = queue(1, to="patient@example.com", body="Private details here")
    with caplog.at_level(logging.INFO, logger="shop.notifications.sender"):
        assert send_pending(LogMailer()) == (1, 0)
    assert "would send to patient@example.com: Message 0" in caplog.text
    assert "Private details" not in caplog.text
    assert load(message_id).sent_at is not None


def test_the_worker_of_make_run_prints_a_line_per_email(app: Flask, tmp_path: Path) -> None:
    """`make run` starts `flask shop worker` with no logging set up; with the log backend every email
    must still show on its console (it showed none: Python drops INFO lines by default)."""
    with app.app_context():
        queue(1, to="patient@example.com", body="Private details here")
    env = {**os.environ, "SHOP_CONFIG": "development", "MAIL_BACKEND": "log", "SHOP_INSTANCE_PATH": str(tmp_path),
           "DATABASE_URL": str(app.config["SQLALCHEMY_DATABASE_URI"])}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "shop", "shop", "worker", "--once"],
                            env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("would send to patient@example.com: Message 0") == 1, result.stderr
    assert "Private details" not in result.stderr + result.stdout


# The worker ----------------------------------------------------------------------------------------


def test_worker_once_through_the_cli_sends_pending_mail(
    app: Flask, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "smtp")
    monkeypatch.setitem(app.config, "MAIL_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", smtp_server.port)
    monkeypatch.setitem(app.config, "MAIL_SENDER", SENDER)
    with app.app_context():
        ids = queue(3)

    if "worker" in shop_cli.commands:  # registered in shop/cli.py
        args = ["shop", "worker", "--once"]
    else:
        monkeypatch.setitem(app.cli.commands, "worker", worker.worker_command)
        args = ["worker", "--once"]
    result = app.test_cli_runner().invoke(args=args)

    assert result.exit_code == 0, result.output
    assert sorted(r.message["Subject"] for r in smtp_server.received) == ["Message 0", "Message 1",
                                                                          "Message 2"]
    with app.app_context():
        assert all(load(i).sent_at is not None for i in ids)


def test_worker_round_drains_more_than_one_batch(
    app: Flask, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "BATCH", 2)
    with app.app_context():
        queue(5)
    assert worker.run_round(app, smtp_server.mailer()) == (5, 0)
    assert len(smtp_server.received) == 5


def test_periodic_jobs_run_and_one_failing_does_not_stop_the_others(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("job failed")

    def release_orders() -> None:
        calls.append("release")

    monkeypatch.setattr(worker, "PERIODIC_JOBS", [broken, release_orders])
    worker.run_worker(app, once=True, interval=0)
    assert calls == ["broken", "release"]


def test_worker_stops_on_keyboard_interrupt(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def interrupt() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "PERIODIC_JOBS", [interrupt])
    worker.run_worker(app, once=False, interval=60)  # returns instead of raising
    assert calls == [1]


def test_worker_stops_on_sigterm(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def sigterm_then_fallback() -> None:
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGTERM)
        else:
            raise KeyboardInterrupt  # the worker ignored SIGTERM; stop the test anyway

    # Should the worker not install its handler, this one keeps the test run alive.
    safety_calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: safety_calls.append(1))
    try:
        monkeypatch.setattr(worker, "PERIODIC_JOBS", [sigterm_then_fallback])
        worker.run_worker(app, once=False, interval=0.01)
        assert calls == [1]
        assert safety_calls == []
        signal.raise_signal(signal.SIGTERM)  # the previous handler is back
        assert safety_calls == [1]
    finally:
        signal.signal(signal.SIGTERM, previous)
