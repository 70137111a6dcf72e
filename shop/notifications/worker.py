"""The background worker: sends the outbox and runs the periodic jobs.

`flask shop worker` runs until stopped (Ctrl-C or SIGTERM, which let the message in hand finish);
`flask shop worker --once` does one round and exits, e.g. from cron.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from shop.database import worker_checked
from shop.extensions import db
from shop.notifications.sender import Mailer, mailer_for_app, send_pending

log = logging.getLogger(__name__)

# Jobs run once per round, each in an app context of its own, after the outbox. Other modules
# append to this list at import time (the release of unpaid orders, for one). A job that raises is
# logged and does not stop the others.
PERIODIC_JOBS: list[Callable[[], None]] = []

BATCH = 50


def run_round(app: Flask, mailer: Mailer, stop: threading.Event | None = None) -> tuple[int, int]:
    """Send every message due now (batch after batch), then run the periodic jobs."""
    with worker_checked():  # its transactions follow the write-lock rule, as requests do
        return _run_round(app, mailer, stop)


def _run_round(app: Flask, mailer: Mailer, stop: threading.Event | None) -> tuple[int, int]:
    sent = failed = 0
    with app.app_context():
        while stop is None or not stop.is_set():
            batch_sent, batch_failed = send_pending(
                mailer, limit=BATCH, should_stop=stop.is_set if stop is not None else None
            )
            sent, failed = sent + batch_sent, failed + batch_failed
            # A short batch means nothing more is due (failures are put off, claimed ones are
            # leased), so the loop ends.
            if batch_sent + batch_failed < BATCH:
                break
    if sent or failed:
        log.info("outbox: %d sent, %d failed", sent, failed)
    for job in list(PERIODIC_JOBS):
        if stop is not None and stop.is_set():
            break
        with app.app_context():
            try:
                job()
            except Exception:
                db.session.rollback()
                log.exception("periodic job %s failed", getattr(job, "__name__", job))
    return sent, failed


def run_worker(app: Flask, *, once: bool, interval: float) -> None:
    """Run rounds every `interval` seconds until stopped; with `once`, run one round and return.

    KeyboardInterrupt and SIGTERM stop the worker cleanly. In the loop, an error in a round (the
    database unreachable, say) is logged and the next round tries again; with `once` it propagates.
    """
    mailer = mailer_for_app(app)
    stop = threading.Event()
    previous = _install_sigterm(stop)
    log.info("worker started with %r%s", mailer, " (one round)" if once else f", every {interval}s")
    try:
        while not stop.is_set():
            try:
                run_round(app, mailer, stop)
            except Exception:
                if once:
                    raise
                log.exception("worker round failed; trying again in %ss", interval)
            if once:
                break
            stop.wait(max(interval, 0))
    except KeyboardInterrupt:
        log.info("worker interrupted")
    finally:
        _restore_sigterm(previous)
    log.info("worker stopped")


_NOT_INSTALLED = object()


def _install_sigterm(stop: threading.Event) -> Any:
    """On SIGTERM, finish the message in hand and stop. Signals only reach the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return _NOT_INSTALLED

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    return signal.signal(signal.SIGTERM, on_sigterm)


def _restore_sigterm(previous: Any) -> None:
    if previous is not _NOT_INSTALLED:
        # None: the previous handler was not set from Python; the default is the closest.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@click.command("worker")
@click.option("--once", is_flag=True, help="Run one round and exit (e.g. from cron).")
@click.option("--interval", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds between rounds.")
@with_appcontext
def worker_command(once: bool, interval: float) -> None:
    """Send the outbox and run the periodic jobs, until Ctrl-C or SIGTERM."""
    run_worker(current_app._get_current_object(), once=once, interval=interval)  # type: ignore[attr-defined]
