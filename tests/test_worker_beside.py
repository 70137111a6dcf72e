"""Customers use the shop while the outbox worker writes: no answer is a 5xx.

The shop is served by waitress (several threads) on the test database, a real file on SQLite. The
worker (`flask shop worker`, a process of its own as in production) runs the whole time: it sends
an outbox that keeps filling (through the log backend) and runs its periodic jobs (unpaid
orders released, expired lots written off, scheduled prices applied). Meanwhile client threads upload JPEG prescriptions, place orders, sign in
and edit their profiles. On SQLite a request that reads and then writes without taking the write lock
first (begin_write) fails with "database is locked" as soon as the worker commits in between.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import sqlalchemy as sa
from flask import Flask
from PIL import Image

from shop.accounts.models import Address, User
from shop.audit import utcnow
from shop.cart import services as cart
from shop.catalog.models import Package, Strength
from shop.catalog.price_models import PriceChange
from shop.database import begin_write
from shop.extensions import db
from shop.inventory.models import StockLot
from shop.notifications.models import OutboxMessage
from shop.notifications.services import enqueue
from shop.orders import services as orders
from shop.orders.models import CANCELLED, Order
from shop.prescriptions.models import Prescription
from tests.conftest import TEST_PASSWORD

UPLOADERS, UPLOADS_EACH = 4, 8
BUYERS, ORDERS_EACH = 2, 5
SIGN_INS = 8
PROFILE_EDITS = 10
OUTBOX = 60  # the worker sends from the start...
REFILL = 10  # ...and more arrives whenever it has sent most of what was waiting


def jpeg_bytes() -> bytes:
    """A small photo of a prescription: a white page with a few dark lines of "writing"."""
    image = Image.new("RGB", (320, 240), "white")
    for y in (60, 90, 120, 150):
        for x in range(30, 290):
            image.putpixel((x, y), (20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass
class Outcomes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def expect(self, action: str, response: requests.Response, status: int) -> None:
        with self.lock:
            self.answers.append((action, response.status_code))
            if response.status_code != status:
                self.problems.append(f"{action}: {response.status_code} (expected {status}) "
                                     f"{response.text[:200]!r}")

    def failed(self, action: str, error: BaseException) -> None:
        with self.lock:
            self.problems.append(f"{action}: {type(error).__name__}: {error}")

    def count(self, action: str, status: int) -> int:
        return sum(1 for a, s in self.answers if a == action and s == status)

    def server_errors(self) -> int:
        return sum(1 for _a, s in self.answers if s >= 500)


def token_in(html: str, name: str = "csrf_token") -> str:
    match = re.search(rf'name="{name}"[^>]*value="([^"]+)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


def signed_in_session(base: str, email: str) -> requests.Session:
    browser = requests.Session()
    token = token_in(browser.get(f"{base}/account/sign-in").text)
    response = browser.post(f"{base}/account/sign-in", allow_redirects=False,
                            data={"email": email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.text[:300]
    return browser


def sent_count(app: Flask) -> int:
    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.sent_at.is_not(None)))
        db.session.remove()
    return count


def start_worker(app: Flask, tmp_path: Path) -> subprocess.Popen:
    """`flask shop worker` in a process of its own, as in production, on the test database. It
    sends through the log backend: no SMTP round trips between its writes."""
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "MAIL_BACKEND": "log"}
    log = (tmp_path / "worker.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "shop", "shop", "worker",
                             "--interval", "0.1"], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen, tmp_path: Path) -> str:
    """SIGTERM: the worker finishes the message in hand and stops. Returns its output."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return (tmp_path / "worker.log").read_text()


def seed_worker_jobs(customer_id: int) -> None:
    """Work for every job of the worker: a long outbox, unpaid orders past their time, an expired
    lot and a price change that is due."""
    for n in range(OUTBOX):
        enqueue(to=f"patient{n}@example.com", subject=f"Notice {n}", body=f"Message {n}.", kind="test")
    db.session.add(Address(user_id=customer_id, recipient="Late Payer", line1="2 Side St",
                           city="Portland", state="OR", postal_code="97204", is_default=True))
    db.session.commit()
    customer = db.session.get(User, customer_id)
    address_id = db.session.scalars(sa.select(Address.id).where(Address.user_id == customer_id)).one()
    thiamine = db.session.scalars(sa.select(Package).where(Package.units == 100)).one()
    for n in range(3):
        cart.add(customer, thiamine.id)
        orders.place_order(customer, address_id, f"late-{n}")
    db.session.execute(sa.update(Order).values(pay_by=utcnow() - dt.timedelta(minutes=1)))
    disulfiram = db.session.scalars(sa.select(Strength).where(Strength.slug == "500-mg")).one()
    db.session.execute(sa.update(StockLot).where(StockLot.strength_id == disulfiram.id)
                       .values(expiry_date=dt.date.today() - dt.timedelta(days=1)))
    package = db.session.scalars(sa.select(Package).where(Package.units == 250)).one()
    db.session.add(PriceChange(package_id=package.id, kind="price", old_price_cents=package.price_cents,
                               new_price_cents=package.price_cents + 100, reason="new list",
                               effective_at=utcnow() - dt.timedelta(minutes=1)))
    db.session.commit()


def test_uploads_orders_sign_ins_and_profile_edits_beside_the_busy_worker(
    app: Flask, live_server: str, make_user: Callable[..., int], tmp_path: Path,
) -> None:
    customers = [f"customer{n}@example.com" for n in range(UPLOADERS + BUYERS + 2)]
    ids = {email: make_user(email) for email in customers}
    late_payer = make_user("late@example.com")
    with app.app_context():
        for email in customers:
            db.session.add(Address(user_id=ids[email], recipient="R", line1="1 Main St", city="Portland",
                                   state="OR", postal_code="97204", is_default=True))
        db.session.commit()
        seed_worker_jobs(late_payer)
        thiamine_id = db.session.scalars(sa.select(Package.id).where(Package.units == 100)).one()
        db.session.remove()
    photo = jpeg_bytes()
    outcomes = Outcomes()
    uploaders, buyers = customers[:UPLOADERS], customers[UPLOADERS:UPLOADERS + BUYERS]
    sign_in_email, profile_email = customers[-2], customers[-1]

    def upload(email: str) -> None:
        browser = signed_in_session(live_server, email)
        for n in range(UPLOADS_EACH):
            token = token_in(browser.get(f"{live_server}/prescriptions/new").text)
            response = browser.post(
                f"{live_server}/prescriptions/new", allow_redirects=False,
                data={"csrf_token": token, "note": f"Page {n}", "product_id": ""},
                files={"files": (f"prescription-{n}.jpg", photo, "image/jpeg")})
            outcomes.expect("upload", response, 302)

    def buy(email: str) -> None:
        browser = signed_in_session(live_server, email)
        for _n in range(ORDERS_EACH):
            token = token_in(browser.get(f"{live_server}/cart").text)
            added = browser.post(f"{live_server}/cart/add", allow_redirects=False,
                                 data={"csrf_token": token, "package_id": thiamine_id, "quantity": 1})
            outcomes.expect("cart", added, 302)
            page = browser.get(f"{live_server}/checkout").text
            response = browser.post(f"{live_server}/checkout", allow_redirects=False, data={
                "csrf_token": token_in(page), "checkout_token": token_in(page, "checkout_token"),
                "address_id": token_in(page, "address_id")})
            outcomes.expect("order", response, 302)

    def sign_in() -> None:
        for _n in range(SIGN_INS):
            browser = requests.Session()
            token = token_in(browser.get(f"{live_server}/account/sign-in").text)
            response = browser.post(f"{live_server}/account/sign-in", allow_redirects=False, data={
                "email": sign_in_email, "password": TEST_PASSWORD, "csrf_token": token})
            outcomes.expect("sign-in", response, 302)

    def edit_profile() -> None:
        browser = signed_in_session(live_server, profile_email)
        for n in range(PROFILE_EDITS):
            token = token_in(browser.get(f"{live_server}/account/profile").text)
            response = browser.post(f"{live_server}/account/profile", allow_redirects=False, data={
                "csrf_token": token, "legal_name": f"Pat Edit {n}", "date_of_birth": "1980-01-01",
                "phone": f"555-01{n:02d}", "consent": "y"})
            outcomes.expect("profile", response, 302)

    def guarded(action: str, work: Callable[..., None], *args: str) -> Callable[[], None]:
        def run() -> None:
            try:
                work(*args)
            except Exception as error:  # a failure in a client thread must fail the test
                outcomes.failed(action, error)
        return run

    stop = threading.Event()
    refills = 0

    def more_mail() -> None:
        # New mail keeps arriving as the worker sends it, so it writes during the whole run and
        # still finishes rounds (a round ends when the outbox is empty), running its jobs.
        nonlocal refills
        with app.app_context():
            while not stop.wait(0.2):
                pending = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)
                                            .where(OutboxMessage.sent_at.is_(None)))
                if pending < REFILL:
                    begin_write()  # this thread writes after its read too
                    for n in range(REFILL):
                        enqueue(to=f"later{n}@example.com", subject="Notice", body="Later.", kind="test")
                    refills += 1
                db.session.commit()
            db.session.remove()

    clients = [threading.Thread(target=guarded("upload", upload, e)) for e in uploaders]
    clients += [threading.Thread(target=guarded("order", buy, e)) for e in buyers]
    clients += [threading.Thread(target=guarded("sign-in", sign_in)),
                threading.Thread(target=guarded("profile", edit_profile))]
    mail_thread = threading.Thread(target=more_mail)
    worker = start_worker(app, tmp_path)
    try:
        ready = time.monotonic() + 90  # the process imports the app first: wait for its first send
        while not sent_count(app) and worker.poll() is None and time.monotonic() < ready:
            time.sleep(0.1)
        assert sent_count(app), "the worker did not start"
        started = time.monotonic()
        mail_thread.start()
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=60)
    finally:
        stop.set()
        if mail_thread.is_alive():
            mail_thread.join(timeout=10)
        worker_log = stop_worker(worker, tmp_path)
    elapsed = time.monotonic() - started

    uploads = UPLOADERS * UPLOADS_EACH
    print(f"\n{uploads} uploads beside the worker: {outcomes.count('upload', 500)} answered 500; "
          f"all 5xx: {outcomes.server_errors()} of {len(outcomes.answers)}; {sent_count(app)} "
          f"emails sent; {elapsed:.1f} s")
    assert not any(thread.is_alive() for thread in clients), "a client hung"
    assert outcomes.problems == [], outcomes.problems[:10]
    assert "Traceback" not in worker_log and "ERROR" not in worker_log, worker_log[-3000:]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Prescription)) == uploads
        placed = db.session.scalar(sa.select(sa.func.count()).select_from(Order).where(
            Order.checkout_token.not_like("late-%")))
        assert placed == BUYERS * ORDERS_EACH
        assert db.session.get(User, ids[profile_email]).legal_name == f"Pat Edit {PROFILE_EDITS - 1}"
        # The worker was busy the whole time, and its jobs ran beside the clients.
        assert sent_count(app) > OUTBOX and refills >= 1
        late = db.session.scalars(sa.select(Order.status).where(Order.checkout_token.like("late-%"))).all()
        assert set(late) == {CANCELLED}
        assert db.session.scalar(sa.select(Strength.stock_on_hand).where(Strength.slug == "500-mg")) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PriceChange)
                                 .where(PriceChange.applied_at.is_not(None))) == 1
