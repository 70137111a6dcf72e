"""localstripe, the fake Stripe server, for tests that take payments.

One server runs for the whole test session on a free loopback port. It keeps state between tests, so
tests make their own objects and never count what the server holds in total.

The server is started by `python -m shop.devstripe` (loopback only, state in memory), never by
`python -m localstripe`, which listens on every interface and shares a state file in /tmp.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SECRET_KEY = "sk_test_localstripe"  # localstripe accepts any sk_test_ key
PUBLISHABLE_KEY = "pk_test_localstripe"
START_TIMEOUT_SECONDS = 15



def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/js.stripe.com/v3/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_localstripe(log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start localstripe on a free loopback port and wait until it answers; fail clearly if not."""
    problems = []
    for _attempt in range(3):  # another process may take the free port before localstripe binds it
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "shop.devstripe", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(base_url):
                return process, base_url
            time.sleep(0.1)
        stop(process)
        output = log_path.read_text(errors="replace")[-3000:]
        problems.append(f"port {port}: exit code {process.returncode}\n{output}")
        if "address already in use" not in output.lower():
            break
    pytest.fail(
        f"localstripe did not answer within {START_TIMEOUT_SECONDS} s "
        f"(is the dev extra installed: pip install -e '.[dev]'?)\n" + "\n".join(problems),
        pytrace=False,
    )


def register_webhook(
    base_url: str, endpoint_id: str, url: str, secret: str, events: list[str] | None = None
) -> None:
    """Make localstripe POST its events to `url`, signed with `secret` (re-registering an id replaces
    it). Every registered endpoint gets every event of the session, from any test."""
    body: dict[str, object] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = events
    request = urllib.request.Request(
        f"{base_url}/_config/webhooks/{endpoint_id}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def unregister_webhook(base_url: str, endpoint_id: str) -> None:
    """localstripe cannot delete an endpoint; this one is made to listen for no event at all."""
    register_webhook(base_url, endpoint_id, "http://127.0.0.1:9/", "unused", events=["no.such.event"])
