"""Serve the shop with waitress, a multi-threaded production WSGI server: `python -m shop.serve`."""

from __future__ import annotations

import argparse
import os

from waitress import serve

from shop import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SHOP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHOP_PORT", "5000")))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("SHOP_THREADS", "8")))
    args = parser.parse_args()
    app = create_app()
    print(f"The shop is running at http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, ident="shop")


if __name__ == "__main__":
    main()
