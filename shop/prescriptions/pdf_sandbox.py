"""Runs one PDF job in a sandboxed child process, so a hostile PDF cannot take a web worker down or
reach its secrets.

A fresh `python -I -B pdf_worker.py` per job (see that module for the protocol and for exactly what
its sandbox guarantees and what it does not): one document per process, nothing shared between
customers, and a hung or bloated child is simply killed. The child gets:

* a wall-clock timeout (PDF_RENDER_TIMEOUT_SECONDS, 15 by default): past it, its whole process
  group is killed (it starts in a session of its own) and reaped;
* an address-space cap (PDF_RENDER_MEMORY_MB, 512 by default) and a CPU-time cap (the timeout
  rounded up), which it sets on itself before reading the document, so they hold even if this
  process dies first; no core dumps, no file writes, no new processes;
* a sandbox it enters before reading the document: Landlock with no rule (it cannot open any
  file, so not /proc/<this pid>/environ, the key files or the database; no TCP), no capabilities,
  and a seccomp filter (no socket of any kind, no fork or exec, no IPC). Where that cannot be set
  up (a kernel without Landlock, another architecture than x86_64) the job fails and the upload is
  refused, unless PDF_SANDBOX_REQUIRED is false (development machines only): then each job logs a
  warning that it ran unconfined;
* an empty environment, `/` as its working directory, no open files but stdin, stdout and stderr
  (no database or client sockets), and `-I` so that no PYTHON* variable or user site-packages can
  change what it imports.

Its answer is read with a cap (`max_payload`, given by the caller: the largest legitimate answer
to that job): a child that writes more is killed, and nothing past the cap is ever buffered.

Why a subprocess and not multiprocessing: both of its start methods hand the child the web
process's environment, and spawn re-imports the server's main module (the app and its
configuration) while fork copies the whole web process, secrets in memory included. A script
with an explicit argv, environment and stdin is the smaller thing to reason about. Starting it
costs about 0.13 s a job, of which the warm-up and the sandbox take 15 to 20 ms (bench/pdf_render.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import time
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
_CHUNK: Final = 64 * 1024  # one pipe buffer


@dataclass(frozen=True)
class PdfLimits:
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB
    # False lets the child run without its sandbox where the kernel cannot provide it (see above).
    sandbox_required: bool = True

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
            sandbox_required=bool(config.get("PDF_SANDBOX_REQUIRED", True)),
        )


class JobStopped(Exception):
    """The child did not finish: `reason` is "time" (a limit on time) or "memory" (the memory cap
    was reached, or the child crashed, which under the cap is how PDFium runs out)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobFailed(Exception):
    """The child answered something unexpected or too much, or could not enter its sandbox (a bug or
    an attack, not a document the customer can fix)."""


class _TooMuchOutput(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    refused: str | None  # one of pdf_worker.REFUSALS, or None for a success
    payload: bytes
    fields: Mapping[str, object]  # the answer line, e.g. "pages"


def command(limits: PdfLimits) -> list[str]:
    return [
        sys.executable, "-I", "-B", str(WORKER),
        "--memory-mb", str(limits.memory_mb), "--cpu-seconds", str(limits.cpu_seconds),
        "--sandbox", "required" if limits.sandbox_required else "optional",
    ]


def run(job: Mapping[str, object], data: bytes, limits: PdfLimits, *, max_payload: int) -> Answer:
    """Run `job` on `data` in a fresh child, accepting at most `max_payload` bytes after the answer
    line. Raises JobStopped or JobFailed."""
    request = json.dumps(dict(job)).encode("utf-8") + b"\n" + data
    kind = job.get("job")
    process = subprocess.Popen(  # noqa: S603 - our own script, a fixed argv, no shell
        command(limits), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={}, cwd="/", start_new_session=True,
    )
    try:
        output = _exchange(process, request, MAX_JOB_LINE + 1 + max_payload, limits.timeout_seconds)
    except TimeoutError:
        log.warning("PDF worker killed after %.1f s (%s job)", limits.timeout_seconds, kind)
        raise JobStopped("time") from None
    except _TooMuchOutput:
        log.error("PDF worker killed: it wrote more than %d bytes (%s job)", max_payload, kind)
        raise JobFailed("the PDF worker wrote more than its answer can be") from None
    finally:
        _kill_group_and_reap(process)
    status = process.returncode
    if status == -signal.SIGXCPU:
        log.warning("PDF worker reached its CPU limit (%s job)", kind)
        raise JobStopped("time")
    if status == -signal.SIGSYS:  # the seccomp filter kills a system call of another ABI
        log.error("PDF worker killed by its sandbox for a forbidden system call (%s job)", kind)
        raise JobFailed("the PDF worker made a forbidden system call")
    if status < 0:
        # Killed by a signal: SIGSEGV or SIGABRT when PDFium fails an allocation under the cap (or
        # trips on a bug), SIGKILL from the kernel's out-of-memory killer.
        log.warning("PDF worker died of signal %s (%s job)", -status, kind)
        raise JobStopped("memory")
    if status > 0:  # an exit with a traceback: the worker could not start or has a bug
        log.error("PDF worker exited with status %s (%s job)", status, kind)
        raise JobFailed(f"the PDF worker exited with status {status}")
    return _parse(output)


def _exchange(process: subprocess.Popen[bytes], request: bytes, limit: int, timeout: float) -> bytearray:
    """Write `request` to the child and read its stdout to the end, within `timeout` seconds and
    `limit` bytes, and wait for it to exit without reaping it (so that its process group cannot be
    reused before `_kill_group_and_reap`). Raises TimeoutError or _TooMuchOutput."""
    assert process.stdin is not None and process.stdout is not None
    deadline = time.monotonic() + timeout
    output = bytearray()
    pending = memoryview(request)
    stdin, stdout = process.stdin.fileno(), process.stdout.fileno()
    os.set_blocking(stdin, False)
    exit_fd = os.pidfd_open(process.pid)  # readable once the child has exited; does not reap it
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(stdin, selectors.EVENT_WRITE)
            selector.register(stdout, selectors.EVENT_READ)
            selector.register(exit_fd, selectors.EVENT_READ)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                for key, _events in selector.select(remaining):
                    if key.fd == stdin:
                        try:
                            pending = pending[os.write(stdin, pending[:_CHUNK]) :]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:  # it stopped reading: it is answering, or gone
                            pending = pending[:0]
                        if not pending:
                            selector.unregister(stdin)
                            process.stdin.close()  # end of file: the document is complete
                    elif key.fd == stdout:
                        chunk = os.read(stdout, _CHUNK)
                        if not chunk:
                            selector.unregister(stdout)
                        elif len(output) + len(chunk) > limit:
                            raise _TooMuchOutput
                        else:
                            output += chunk
                    else:
                        # It has exited. Anything it left in its group could hold stdout open.
                        selector.unregister(exit_fd)
                        _kill_group(process.pid)
    finally:
        os.close(exit_fd)
    return output


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(pid, signal.SIGKILL)


def _kill_group_and_reap(process: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group, then reap the child. Safe after it exited: until it
    is reaped its id, which is also the group's, cannot be given to another process."""
    _kill_group(process.pid)
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def _parse(output: bytearray) -> Answer:
    newline = output.find(b"\n", 0, MAX_JOB_LINE + 1)
    try:
        if newline < 0:
            raise ValueError("no answer line")
        fields = json.loads(output[:newline])
        if not isinstance(fields, dict):
            raise ValueError("the answer line is not an object")
    except ValueError:
        raise JobFailed("the PDF worker's answer is unreadable") from None
    if fields.get("unconfined") is True:
        log.warning("PDF worker ran WITHOUT its sandbox: Landlock is unavailable and PDF_SANDBOX_REQUIRED "
                    "is false")
    if fields.get("failed") == "memory":
        log.warning("PDF worker reached its memory limit")
        raise JobStopped("memory")
    if fields.get("failed") == "sandbox":
        log.error("PDF worker could not enter its sandbox (%s); PDFs are refused until it can, or until "
                  "PDF_SANDBOX_REQUIRED is set to false on a machine without Landlock",
                  str(fields.get("detail"))[:200])
        raise JobFailed("the PDF worker could not enter its sandbox")
    if fields.get("failed") == "import":
        log.error("PDF worker imported %s after its sandbox closed: load it in pdf_worker.prepare()",
                  str(fields.get("detail"))[:200])
        raise JobFailed("the PDF worker imported a module inside its sandbox")
    if "failed" in fields:
        failure = str(fields["failed"])[:80]  # an exception's type name, never its message
        log.error("PDF worker failed with %s", failure)
        raise JobFailed(f"the PDF worker failed with {failure}")
    refused = fields.get("refused")
    if refused is not None:
        if not isinstance(refused, str) or refused not in REFUSALS:  # show only our own sentences
            raise JobFailed("the PDF worker refused with an unknown message")
        return Answer(refused, b"", fields)
    payload = bytes(memoryview(output)[newline + 1 :])
    if fields.get("ok") is not True or fields.get("size") != len(payload):
        raise JobFailed("the PDF worker's answer is incomplete")
    return Answer(None, payload, fields)
