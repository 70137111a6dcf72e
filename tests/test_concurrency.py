"""Pages served by the real multi-threaded server to 8 clients at once, while stock is being written:
every answer is 200 (no "database is locked" on the SQLite default)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests
import sqlalchemy as sa
from flask import Flask

from shop.catalog.models import Strength
from shop.extensions import db

CLIENTS = 8
SECONDS = 3.0
URLS = [
    "/",
    "/products",
    "/products?q=ldn",
    "/products/naltrexone",
    "/products/naltrexone?strength=4-5-mg",
    "/products/disulfiram?strength=500-mg",
    "/monographs/naltrexone",
]


def test_concurrent_page_views_all_succeed_while_stock_changes(app: Flask, live_server: str) -> None:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    writes = 0
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    start = threading.Barrier(CLIENTS + 1)

    def browse(n: int) -> None:
        session = requests.Session()
        start.wait()
        i = n
        while time.monotonic() < deadline:
            url = URLS[i % len(URLS)]
            i += 1
            try:
                status = session.get(live_server + url, timeout=30).status_code
            except requests.RequestException as error:
                with lock:
                    failures.append(f"{url}: {error}")
                continue
            with lock:
                statuses[status] += 1

    def write_stock() -> None:
        # An admin receiving stock at the same time: short write transactions in a loop.
        nonlocal writes
        with app.app_context():
            start.wait()
            while time.monotonic() < deadline:
                db.session.execute(
                    sa.update(Strength)
                    .where(Strength.slug == "50-mg")
                    .values(stock_on_hand=Strength.stock_on_hand + 1)
                )
                db.session.commit()
                writes += 1
                time.sleep(0.005)
            db.session.remove()

    threads = [threading.Thread(target=browse, args=(n,)) for n in range(CLIENTS)]
    writer = threading.Thread(target=write_stock)
    for thread in [*threads, writer]:
        thread.start()
    for thread in [*threads, writer]:
        thread.join(timeout=60)

    assert failures == []
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) >= CLIENTS * 5, "the server answered too few requests to mean anything"
    assert writes > 10
