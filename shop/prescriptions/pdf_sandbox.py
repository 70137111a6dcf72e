"""Runs one PDF job in a child process, with limits, so a hostile PDF cannot take a web worker down.

A fresh `python -I -B pdf_worker.py` per job (see that module for the protocol): one document per
process, nothing shared between customers, and a hung or bloated child is simply killed. The
child gets:

* a wall-clock timeout (PDF_RENDER_TIMEOUT_SECONDS, 15 by default): past it, it is killed;
* an address-space cap (PDF_RENDER_MEMORY_MB, 512 by default) and a CPU-time cap (the timeout
  rounded up), which it sets on itself before reading the document, so they hold even if this
  process dies first; no core dumps, no file writes;
* an empty environment (no SECRET_KEY, database URL, Stripe or storage keys: nothing it needs),
  `/` as its working directory, no open files but stdin, stdout and stderr (no database or
  client sockets), and `-I` so that no PYTHON* variable or user site-packages can change what it
  imports.

Why a subprocess and not multiprocessing: both of its start methods hand the child the web
process's environment, and spawn re-imports the server's main module (the app and its
configuration) while fork copies the whole web process, secrets in memory included. A script
with an explicit argv, environment and stdin is the smaller thing to reason about. Starting it
costs 0.1 to 0.15 s a job (bench/pdf_render.py).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from flask import current_app, has_app_context

from shop.prescriptions.pdf_worker import MAX_JOB_LINE, REFUSALS

log = logging.getLogger(__name__)

WORKER: Final = Path(__file__).with_name("pdf_worker.py")
DEFAULT_TIMEOUT_SECONDS: Final = 15.0
DEFAULT_MEMORY_MB: Final = 512


@dataclass(frozen=True)
class PdfLimits:
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0 or self.memory_mb < 1:
            raise ValueError(f"PDF limits must be positive, not {self}")

    @property
    def cpu_seconds(self) -> int:
        """The child's CPU cap: it never needs more CPU time than wall-clock time (one thread)."""
        return max(1, math.ceil(self.timeout_seconds))

    @classmethod
    def from_config(cls) -> PdfLimits:
        """The app's settings inside a request or app context, the defaults outside one."""
        if not has_app_context():
            return cls()
        config = current_app.config
        return cls(
            timeout_seconds=float(config.get("PDF_RENDER_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)),
            memory_mb=int(config.get("PDF_RENDER_MEMORY_MB", DEFAULT_MEMORY_MB)),
        )


class JobStopped(Exception):
    """The child did not finish: `reason` is "time" (a limit on time) or "memory" (the memory cap
    was reached, or the child crashed, which under the cap is how PDFium runs out)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobFailed(Exception):
    """The child answered something unexpected (a bug, not the document's fault)."""


@dataclass(frozen=True)
class Answer:
    refused: str | None  # one of pdf_worker.REFUSALS, or None for a success
    payload: bytes
    fields: Mapping[str, object]  # the answer line, e.g. "pages"


def command(limits: PdfLimits) -> list[str]:
    return [
        sys.executable, "-I", "-B", str(WORKER),
        "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(limits.cpu_seconds),
    ]


def run(job: Mapping[str, object], data: bytes, limits: PdfLimits) -> Answer:
    """Run `job` on `data` in a fresh child. Raises JobStopped or JobFailed."""
    request = json.dumps(dict(job)).encode("utf-8") + b"\n" + data
    try:
        finished = subprocess.run(  # noqa: S603 - our own script, a fixed argv, no shell
            command(limits), input=request, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={}, cwd="/", timeout=limits.timeout_seconds, check=False,
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed and reaped the child
        log.warning("PDF worker killed after %.1f s (%s job)", limits.timeout_seconds, job.get("job"))
        raise JobStopped("time") from None
    status = finished.returncode
    if status == -signal.SIGXCPU:
        log.warning("PDF worker reached its CPU limit (%s job)", job.get("job"))
        raise JobStopped("time")
    if status < 0:
        # Killed by a signal: SIGSEGV or SIGABRT when PDFium fails an allocation under the cap (or
        # trips on a bug), SIGKILL from the kernel's out-of-memory killer.
        log.warning("PDF worker died of signal %s (%s job)", -status, job.get("job"))
        raise JobStopped("memory")
    if status > 0:  # an exit with a traceback: the worker could not start or has a bug
        log.error("PDF worker exited with status %s (%s job)", status, job.get("job"))
        raise JobFailed(f"the PDF worker exited with status {status}")
    return _parse(finished.stdout)


def _parse(output: bytes) -> Answer:
    line, newline, payload = output.partition(b"\n")
    try:
        if not newline or len(line) > MAX_JOB_LINE:
            raise ValueError("no answer line")
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise ValueError("the answer line is not an object")
    except ValueError:
        raise JobFailed("the PDF worker's answer is unreadable") from None
    if fields.get("failed") == "memory":
        log.warning("PDF worker reached its memory limit")
        raise JobStopped("memory")
    if "failed" in fields:
        failure = str(fields["failed"])[:80]  # an exception's type name, never its message
        log.error("PDF worker failed with %s", failure)
        raise JobFailed(f"the PDF worker failed with {failure}")
    refused = fields.get("refused")
    if refused is not None:
        if not isinstance(refused, str) or refused not in REFUSALS:  # show only our own sentences
            raise JobFailed("the PDF worker refused with an unknown message")
        return Answer(refused, b"", fields)
    if fields.get("ok") is not True or fields.get("size") != len(payload):
        raise JobFailed("the PDF worker's answer is incomplete")
    return Answer(None, payload, fields)
