"""`make run`: the shop with everything it needs on this machine, stopped together with Ctrl+C.

- localstripe (the fake Stripe, `python -m shop.devstripe`) on the loopback port of STRIPE_API_BASE,
  unless something already answers there, with the shop's webhook endpoint registered in it;
- the outbox worker (`flask shop worker`): emails go to the log and the dev mailbox, unpaid orders
  are released when due;
- the shop itself under waitress (`python -m shop.serve`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from shop import create_app


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback http only
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_localstripe(api_base: str) -> subprocess.Popen | None:
    parts = urlsplit(api_base)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        return None  # not ours to start (a real Stripe or a shared stand-in)
    if _answers(f"{api_base}/js.stripe.com/v3/"):
        print(f"Using the localstripe already running at {api_base}", flush=True)
        return None
    process = subprocess.Popen([sys.executable, "-m", "shop.devstripe", str(parts.port or 80)],  # noqa: S603
                               stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _answers(f"{api_base}/js.stripe.com/v3/"):
            print(f"localstripe (the fake Stripe) is running at {api_base}", flush=True)
            return process
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"localstripe did not start at {api_base}")


def _register_webhook(api_base: str, shop_url: str, secret: str) -> None:
    body = json.dumps({"url": f"{shop_url}/stripe/webhook", "secret": secret}).encode()
    request = urllib.request.Request(f"{api_base}/_config/webhooks/shop", data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - the loopback localstripe we started
        pass


def main() -> None:
    app = create_app()
    api_base = app.config.get("STRIPE_API_BASE")
    port = os.environ.get("SHOP_PORT", "5000")
    children: list[subprocess.Popen] = []
    try:
        if api_base:
            stripe = _start_localstripe(api_base)
            if stripe is not None:
                children.append(stripe)
                _register_webhook(api_base, f"http://127.0.0.1:{port}", app.config["STRIPE_WEBHOOK_SECRET"])
        children.append(subprocess.Popen([sys.executable, "-m", "flask", "--app", "shop", "shop", "worker"],
                                         stdin=subprocess.DEVNULL))
        subprocess.run([sys.executable, "-m", "shop.serve"], check=False)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
