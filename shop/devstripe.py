"""Run localstripe, the fake Stripe server used in development and tests, on loopback only.

`python -m localstripe` listens on every interface and pickles its state to a file in /tmp shared by
every localstripe on the machine; this launcher binds 127.0.0.1 and keeps the state in memory.
localstripe is a development dependency: production talks to Stripe itself.

    python -m shop.devstripe [PORT]     (default 8420, the development STRIPE_API_BASE)
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> None:
    from aiohttp import web
    from localstripe import resources, server

    port = int(argv[0]) if argv else 8420
    resources.Store.dump_to_disk = lambda self: None  # state in memory only
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    web.run_app(server.app, host="127.0.0.1", port=port, print=None,
                access_log=logging.getLogger("aiohttp.access"))


if __name__ == "__main__":
    main(sys.argv[1:])
