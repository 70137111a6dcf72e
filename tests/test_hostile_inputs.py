"""Every route, as every role, against hostile values in its path, its query string and its form.

The endpoints are the access matrix's, which must name every endpoint of the URL map, so a new
route is walked as soon as it has its access rows; the valid URLs come from those rows. Roles:
visitor, customer, pharmacist, admin, and a pharmacist owing the second factor. Values: ids beyond
32 and 64 bits, negative and zero, Unicode digits that pass `str.isdigit()` ("²") or `int()` ("٣"),
empty, 10,000 characters, NUL, invalid UTF-8, and lists of values; days and decimals that parse but
break what follows (9999-12-31, 0001-01-01, 1e999999, NaN); and, to every file input, CSV files with
NUL and control characters in their cells. Nothing may answer 5xx; and a
GET, a request to a path that names nothing, or a POST whose every field is hostile changes nothing
in the database (audit, session, outbox and reset rows aside: a refused sign-in is rightly recorded;
MAY_CHANGE lists the actions that take no input).

The module shares one database and one signed-in client per role across its tests (one test per
endpoint and method), so it replaces the per-test fresh catalog of tests/conftest.py.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import inspect
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask, got_request_exception
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException

from shop.access import access_rule
from shop.extensions import db, limiter
from tests.conftest import TEST_PASSWORD, TOTP_SECRET, reset_database, sign_in
from tests.test_access_matrix import MATRIX, build_objects, token_for

ROLES = ("visitor", "customer", "pharmacist", "admin")
# "pending" is a pharmacist who has given the password and owes the second factor.
EMAILS = {"customer": "customer@example.com", "other_customer": "other@example.com",
          "pharmacist": "pharmacist@example.com", "admin": "admin@example.com",
          "pending": "pending@example.com"}
# Who gets past each access rule (shop/access.py); the others only meet the hostile paths.
ALLOWED = {
    "public": set(ROLES), "signed_in": {"customer", "pharmacist", "admin"}, "customer": {"customer"},
    "pharmacist": {"pharmacist"}, "admin": {"admin"}, "staff": {"pharmacist", "admin"},
    "shopper": {"visitor", "customer"}, "two_factor_pending": {"pending"},
}

# Hostile values as they travel in a URL (percent-encoded where needed).
HOSTILE = {
    "huge": "99999999999999999999",
    "2**63": str(2**63),
    "2**31": str(2**31),
    "negative": "-1",
    "zero": "0",
    "superscript two": "%C2%B2",
    "arabic three": "%D9%A3",
    "empty": "",
    "10,000 characters": "9" * 10_000,
    "NUL": "%00",
    "invalid UTF-8": "%ff%fe",
}
# Values that pass a first parse and break what is done next: days with no day after or before them,
# a Decimal() that overflows once multiplied and one that fails every comparison. Sent as query
# values and, one field at a time, into each field that carries a number or a date.
EXTREME = {"last day": "9999-12-31", "first day": "0001-01-01", "exponent": "1e999999", "NaN": "NaN"}
VALUES = HOSTILE | EXTREME
# Generic query names any list or form page might read, besides the view's own.
GENERIC_ARGS = ("page", "after", "before", "q", "next", "id", "product", "strength", "lot", "status",
                "role", "action", "kind", "order", "sort", "from", "to")
# Generic form names: every integer the shop's forms carry.
GENERIC_FIELDS = ("quantity", "package_id", "address_id", "product_id", "strength_id", "lot_id",
                  "version", "units", "position", "page")

# Tables a refused request may rightly write: the audit log (a refused sign-in is audited), server
# sessions (touched on every request), the outbox (a reset request for an unknown address) and
# password resets. Row counts of every other table and a hash of its rows must not move.
VOLATILE = {"audit_event", "user_session", "outbox_message", "password_reset"}

# Endpoints whose POST may change something even when every field holds a hostile value: they act
# on the object in their path and read no field that could be hostile, or only free text.
MAY_CHANGE = {
    "accounts.reset": "a long number or Unicode digits make an acceptable new password",
    "staff_orders.cancel": "the reason is free text",
    "accounts.logout": "signs the client out",
    "orders.cancel": "cancels the customer's own unpaid order",
    "pharmacy.claim": "claims the prescription",
    "pharmacy.release": "releases the pharmacist's claim",
    "admin_users.disable": "disables the account in the path",
    "admin_users.enable": "enables it again",
    "admin_catalog.alias_remove": "removes the alias in the path",
    "admin_catalog.strength_deactivate": "deactivates the strength in the path",
    "admin_catalog.strength_activate": "activates it again",
    "admin_catalog.product_deactivate": "deactivates the product in the path",
    "admin_catalog.product_activate": "activates it again",
    "profile.make_default_address": "makes the address in the path the default",
    "profile.remove_health_entry": "removes the entry in the path",
    "profile.delete_address": "deletes the address in the path",
}


# Database fingerprint -------------------------------------------------------------------------------

def fingerprint() -> dict[str, tuple[int, str]]:
    """Row count and a hash of the rows of every table but the volatile ones."""
    prints = {}
    for table in db.metadata.sorted_tables:
        if table.name in VOLATILE:
            continue
        rows = db.session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
        digest = hashlib.sha256(repr([tuple(row) for row in rows]).encode()).hexdigest()
        prints[table.name] = (len(rows), digest)
    db.session.rollback()
    return prints


def changed(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    return sorted(name for name in before if before[name] != after[name])


# Forms found on the pages ---------------------------------------------------------------------------

@dataclass
class Form:
    action: str
    fields: dict[str, list[str]] = field(default_factory=dict)  # name -> value(s) the page sends
    numeric: set[str] = field(default_factory=set)  # fields that carry a number (or an id) or a date
    files: list[str] = field(default_factory=list)  # file inputs


def _is_number(value: str) -> bool:
    return bool(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value))


class FormParser(HTMLParser):
    """The POST forms of a page: action and the value each field would send as it stands."""

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url, self.forms, self.current = page_url, [], None
        self.select: str | None = None
        self.options: list[tuple[str, bool]] = []
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            self.current = Form(urlsplit(a.get("action") or self.page_url).path or self.page_url)
            self.forms.append(self.current)
        elif tag == "option" and self.select:
            self.options.append((a.get("value", ""), "selected" in a))
        elif self.current is None or not a.get("name"):
            return
        elif tag == "input" and a.get("type") == "file":
            self.current.files.append(a["name"])
        elif tag == "input" and a.get("type") not in ("submit", "button", "file", "image", "reset"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                self.current.fields.setdefault(a["name"], [])
            else:
                self.current.fields.setdefault(a["name"], []).append(a.get("value", ""))
            if (a.get("type") in ("number", "date", "datetime-local") or "inputmode" in a
                    or _is_number(a.get("value", ""))):
                self.current.numeric.add(a["name"])
        elif tag == "select":
            self.select, self.options = a["name"], []
        elif tag == "textarea":
            self.textarea = a["name"]
            self.current.fields.setdefault(a["name"], []).append("")
        elif tag == "button" and a.get("value"):
            self.current.fields.setdefault(a["name"], []).append(a["value"])

    def handle_data(self, data: str) -> None:
        if self.textarea and self.current is not None:
            self.current.fields[self.textarea][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select" and self.select and self.current is not None:
            chosen = [v for v, selected in self.options if selected] or [v for v, _ in self.options[:1]]
            self.current.fields[self.select] = chosen
            if any(_is_number(v) for v, _ in self.options):
                self.current.numeric.add(self.select)
            self.select = None

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def body(pairs: list[tuple[str, str]]) -> str:
    """An urlencoded body; values are already URL-encoded (so invalid UTF-8 can be sent)."""
    return "&".join(f"{quote(name, safe='')}={value}" for name, value in pairs)


# The shared world -----------------------------------------------------------------------------------

@dataclass
class World:
    app: Flask
    objects: dict[str, object]
    clients: dict[str, FlaskClient]
    errors: list[str]  # exceptions of 500 answers, newest last
    forms: dict[tuple[str, str], Form] = field(default_factory=dict)  # (role, endpoint) -> a form
    crawled: set[str] = field(default_factory=set)
    current: dict | None = None  # the database's fingerprint, while nothing unchecked has run since

    def client(self, role: str) -> FlaskClient:
        """The role's client, signed in again if a request signed it out (sign-out, a disable)."""
        client = self.clients[role]
        if role == "pending" and client.get(VERIFY).status_code != 200:
            client = self.clients[role] = owing_second_factor(self.app)
            self.current = None
        # The sign-in page sends a signed-in client away (a cheap check) and shows itself to others.
        elif role not in ("visitor", "pending") and client.get("/account/sign-in").status_code != 302:
            with self.app.app_context():
                limiter.reset()
            client = self.clients[role] = self.app.test_client()
            sign_in(client, self.app, EMAILS[role])
            self.current = None  # a sign-in writes to the account
        return client

    def token(self, role: str) -> str:
        return token_for(self.clients[role])

    def crawl(self, role: str) -> None:
        """Read the forms of every page the role may open, keyed by the endpoint they post to."""
        if role in self.crawled:
            return
        self.crawled.add(role)
        adapter = self.app.url_map.bind("localhost")
        pages = [url.format(**self.objects) for _endpoint, method, url, _data, _expected in MATRIX
                 if method == "GET" and "999999" not in url]
        for page in pages if role != "pending" else [VERIFY]:
            response = self.clients[role].get(page)
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            parser = FormParser(urlsplit(page).path)
            parser.feed(response.get_data(as_text=True))
            for form in parser.forms:
                try:
                    target, _args = adapter.match(form.action, method="POST")
                except HTTPException:
                    continue
                self.forms.setdefault((role, str(target)), form)


VERIFY = "/account/sign-in/verify"


def owing_second_factor(app: Flask) -> FlaskClient:
    """A client past the password step of the "pending" pharmacist, owing the second factor."""
    with app.app_context():
        limiter.reset()  # hostile codes may have used up the account's tries
    client = app.test_client()
    response = post(client, "/account/sign-in", token_for(client),
                    [("email", quote(EMAILS["pending"])), ("password", quote(TEST_PASSWORD))])
    assert response.status_code == 302 and VERIFY in response.headers["Location"]
    return client


def make_users(app: Flask, password_hash: str) -> dict[str, int]:
    from shop.accounts.models import User
    from shop.accounts.secret_box import seal

    ids = {}
    with app.app_context():
        for key, email in EMAILS.items():
            role = {"pharmacist": "pharmacist", "admin": "admin", "pending": "pharmacist"}.get(key, "customer")
            user = User(email=email, password_hash=password_hash, legal_name=key.title(),
                        date_of_birth=dt.date(1980, 1, 1), role=role)
            db.session.add(user)
            db.session.flush()
            if role != "customer":
                user.totp_secret, user.totp_enabled = seal(user.id, TOTP_SECRET), True
            ids[key] = user.id
        db.session.commit()
    return ids


@pytest.fixture(autouse=True)
def fresh_catalog() -> Iterator[None]:
    """Overrides tests/conftest.py: this module's tests share the database the `world` set up."""
    yield


@pytest.fixture(scope="module")
def world(app: Flask, localstripe: str, password_hash: str) -> Iterator[World]:
    saved = app.config["STRIPE_API_BASE"]
    app.config["STRIPE_API_BASE"] = localstripe  # the payment pages talk to localstripe
    app.extensions.pop("payment_gateway", None)
    with app.app_context():
        reset_database()
        limiter.reset()
    users = make_users(app, password_hash)
    objects = build_objects(app, users)
    with app.app_context():  # a cart to check out, so the checkout form is there to be read
        from shop.accounts.models import User
        from shop.cart import services as cart
        from shop.catalog.models import Package, Strength

        thiamine = db.session.scalars(sa.select(Package).join(Strength).where(Strength.slug == "100-mg")).first()
        cart.add(db.session.get(User, users["customer"]), thiamine.id)
    clients = {"visitor": app.test_client()}
    for role in ROLES[1:]:
        clients[role] = app.test_client()
        assert sign_in(clients[role], app, EMAILS[role]).status_code == 302
    clients["pending"] = owing_second_factor(app)
    # The pharmacist holds the prescription, so its review page carries the transcription form.
    claimed = post(clients["pharmacist"], f"/pharmacy/prescriptions/{objects['rx']}/claim",
                   token_for(clients["pharmacist"]), [])
    assert claimed.status_code == 302
    # A failure answers 500 as in production (rather than raising into the test), and is noted.
    app.config["PROPAGATE_EXCEPTIONS"] = False
    errors: list[str] = []

    def note(sender: Flask, exception: BaseException, **extra: object) -> None:
        errors.append(f"{type(exception).__name__}: {str(exception)[:200]}")

    got_request_exception.connect(note, app)
    yield World(app, objects, clients, errors)
    got_request_exception.disconnect(note, app)
    app.config["PROPAGATE_EXCEPTIONS"] = None
    app.config["STRIPE_API_BASE"] = saved
    app.extensions.pop("payment_gateway", None)


# What each endpoint reads ---------------------------------------------------------------------------

def endpoints() -> list[tuple[str, str]]:
    """(endpoint, method) in the matrix's order, which keeps state-changing rows last."""
    seen: list[tuple[str, str]] = []
    for endpoint, method, *_ in MATRIX:
        if (endpoint, method) not in seen:
            seen.append((endpoint, method))
    return seen


def valid_url(world: World, endpoint: str, method: str) -> str:
    rows = [url for e, m, url, *_ in MATRIX if (e, m) == (endpoint, method)]
    usable = [url for url in rows if "999999" not in url and "NOSUCH" not in url] or rows
    return usable[0].format(**world.objects)


def rule_for(app: Flask, endpoint: str) -> str:
    return next(rule.rule for rule in app.url_map.iter_rules() if rule.endpoint == endpoint)


_ARG_NAME = re.compile(r"""request\.(?:args|values)(?:\.get(?:list)?\(|\[)\s*["']([^"']+)["']""")


def query_names(app: Flask, endpoint: str) -> tuple[list[str], list[str]]:
    """The query names the view's module reads, and the generic ones it does not."""
    view = inspect.unwrap(app.view_functions[endpoint])
    own = sorted(set(_ARG_NAME.findall(inspect.getsource(sys.modules[view.__module__]))))
    return own, [name for name in GENERIC_ARGS if name not in own]


def path_variants(rule: str) -> dict[str, str]:
    """The rule with every variable part replaced by each hostile value."""
    return {label: re.sub(r"<[^>]+>", value, rule) for label, value in HOSTILE.items()}


def hostile_files(world: World) -> list[tuple[str, bytes]]:
    """(filename, content): each CSV export of the shop with its first row's cells, one at a time,
    holding a NUL (the other cells valid, so the row gets as far as the database), and one with a
    control character in every cell; then bytes that are no text at all."""
    client = world.client("admin")
    files = []
    for url in sorted({url for _e, method, url, *_ in MATRIX if method == "GET" and url.endswith(".csv")}):
        header, first = list(csv.reader(client.get(url).get_data(as_text=True).splitlines()))[:2]
        rows = [[*first[:column], first[column][:2] + "\x00" + first[column][2:], *first[column + 1:]]
                for column in range(len(first))]
        rows.append([f"{cell[:1]}{bad}{cell[1:]}" for cell, bad in zip(first, "\x1b\t\n\x7f\x85\x01", strict=False)])
        for number, row in enumerate(rows):
            out = io.StringIO()
            csv.writer(out).writerows([header, row])
            files.append((f"{number}-{url.rsplit('/', 1)[-1]}", out.getvalue().encode()))
    assert len(files) >= 12  # the price and the stock exports
    return [*files, ("junk.csv", bytes(range(32)) + b"\xff\xfe\x00,\x00\n" * 3)]


def post(client: FlaskClient, url: str, token: str, pairs: list[tuple[str, str]]):
    return client.post(url, data=body([("csrf_token", token), *pairs]),
                       content_type="application/x-www-form-urlencoded")


# The test -------------------------------------------------------------------------------------------

# Path values the `<int:...>` converter alone refuses (tests/test_numbers.py checks it for each):
# an id-only route is sent the others.
ROUTER_ALONE = ("2**63", "zero", "empty", "10,000 characters", "NUL")
# Values some fields rightly take (a threshold of 0, a change of -1, an optional field left empty):
# sent to every field too, but only after the check that nothing changed.
MAY_BE_VALID = ("negative", "zero", "empty")
# One field at a time, the others as the page filled them in, into each field that carries a number
# or an id: the values that broke integer parsing (overflow, a digit int() refuses). NUL never reaches a view (shop/inputs.py; tested below).
# The extreme values go to the first role the view lets in (the others read their input the same way).
ONE_FIELD_VALUES = ("huge", "superscript two")


@pytest.mark.parametrize(("endpoint", "method"), endpoints(), ids=lambda v: v)
def test_hostile_inputs(world: World, endpoint: str, method: str) -> None:
    """Only roles the access rule lets in reach the view; the others are refused before it reads
    anything. A hostile id never gets past the router, so an integer-only path is tried once."""
    app = world.app
    rule_name = access_rule(app.view_functions[endpoint]) or "public"
    allowed = [role for role in (*ROLES, "pending") if role in ALLOWED[rule_name]]
    rule = rule_for(app, endpoint)
    only_ids = re.fullmatch(r"([^<]|<int:[^>]+>|<any\([^)]*\):[^>]+>)*", rule) is not None
    failures: list[str] = []

    def snapshot(fresh: bool = False) -> dict:
        if fresh or world.current is None:
            with app.app_context():
                world.current = fingerprint()
        return world.current

    def check(role: str, what: str, response) -> None:
        if response.status_code >= 500:
            failures.append(f"{role} {what}: {response.status_code} {world.errors[-1:]}")

    def unchanged(role: str, what: str, before: dict) -> None:
        moved = changed(before, snapshot(fresh=True))
        if moved:
            failures.append(f"{role} {what} changed {moved}")

    for role in allowed:
        client = world.client(role)
        token = world.token(role) if method == "POST" else ""
        path = urlsplit(valid_url(world, endpoint, method)).path
        one_field = (*ONE_FIELD_VALUES, *EXTREME) if role == allowed[0] else ONE_FIELD_VALUES
        before = snapshot()
        # Hostile values in the path: nothing is found, nothing changes.
        if "<" in rule and (role == allowed[0] or not only_ids):
            for label, hostile_path in path_variants(rule).items():
                if only_ids and label in ROUTER_ALONE:
                    continue
                response = client.get(hostile_path) if method == "GET" else post(client, hostile_path, token, [])
                check(role, f"{method} path {label}", response)
        if method == "GET":
            # Each of the view's own query names alone, then every name at once.
            own, generic = query_names(app, endpoint)
            for name in own:
                for label in one_field:
                    check(role, f"GET ?{name}={label}", client.get(f"{path}?{body([(name, VALUES[label])])}"))
            # The page reads its query the same way for every role: the others get fewer values.
            values_for_role = VALUES if role == allowed[0] else {k: VALUES[k] for k in ONE_FIELD_VALUES}
            for label, value in [*values_for_role.items(), ("list of values", None)]:
                values = ("%D9%A3", "1") if value is None else (value,)
                everything = body([(name, v) for name in own + generic for v in values])
                check(role, f"GET every arg={label}", client.get(f"{path}?{everything}"))
            unchanged(role, "GET", before)  # no GET changes anything
            continue
        unchanged(role, "POST to hostile paths", before)
        # Every field of the page's form (and the generic integer names) holding one hostile value;
        # in a list of values the hostile one comes first, where a single-value read finds it.
        world.crawl(role)
        form = world.forms.get((role, endpoint))
        own_fields = [name for name in (form.fields if form else {}) if name != "csrf_token"]
        names = own_fields + [name for name in GENERIC_FIELDS if name not in own_fields]
        target = form.action if form else path
        before = snapshot()
        for label, value in [*HOSTILE.items(), ("list of values", None)]:
            if label in MAY_BE_VALID:
                continue
            values = ("%D9%A3", "1") if value is None else (value,)
            check(role, f"POST every field={label}", post(client, target, token,
                                                          [(n, v) for n in names for v in values]))
        if endpoint not in MAY_CHANGE:
            unchanged(role, "POST with every field hostile", before)
        world.current = None  # what follows may rightly change things
        for label in (*MAY_BE_VALID, *(EXTREME if role == allowed[0] else ())):
            check(role, f"POST every field={label}", post(client, target, token,
                                                          [(n, VALUES[label]) for n in names]))
        for name in [name for name in own_fields if name in form.numeric]:
            filled = [(n, quote(v, safe="")) for n, values in form.fields.items()
                      if n not in ("csrf_token", name) for v in values]
            for label in one_field:
                check(role, f"POST {name}={label}", post(client, target, token, [(name, VALUES[label]), *filled]))
        # A file input: files with NUL and control bytes, as CSV in each import's columns and as junk.
        for name in form.files if form else []:
            filled = {n: values for n, values in form.fields.items() if n != "csrf_token"}
            before = snapshot(fresh=True)
            for filename, content in hostile_files(world):
                response = client.post(target, content_type="multipart/form-data", data={
                    **filled, "csrf_token": token, name: (io.BytesIO(content), filename)})
                check(role, f"POST {name}={filename}", response)
            if endpoint not in MAY_CHANGE:
                unchanged(role, "POST with hostile files", before)
    assert failures == []


def test_a_price_import_confirmed_with_hostile_contents_changes_nothing(world: World) -> None:
    """The confirm step carries the file back in base64: hostile files there are refused too."""
    client = world.client("admin")
    token = world.token("admin")
    with world.app.app_context():
        before = fingerprint()
    for filename, content in hostile_files(world):
        for accept in ("x", "0" * 64, "NaN"):
            response = post(client, "/admin/prices/import/confirm", token, [
                ("content", quote(base64.b64encode(content).decode(), safe="")), ("filename", filename),
                ("accept", accept)])
            assert response.status_code < 500, (filename, world.errors[-1:])
    with world.app.app_context():
        assert changed(before, fingerprint()) == []
    world.current = None


def test_every_endpoint_is_walked(app: Flask) -> None:
    walked = {endpoint for endpoint, _ in endpoints()}
    assert {rule.endpoint for rule in app.url_map.iter_rules()} - {"static"} <= walked


def test_nul_in_a_path_query_or_form_is_refused_before_any_view(world: World) -> None:
    """PostgreSQL fails a query holding NUL in a text value; no view gets one to pass on."""
    client = world.app.test_client()
    assert client.get("/products/naltrexone%00").status_code == 400
    assert client.get("/orders/CW-1%00").status_code == 400
    assert client.get("/products?q=ldn%00").status_code == 400
    token = token_for(client)
    response = post(client, "/account/sign-in", token, [("email", "customer%00@example.com"), ("password", "x")])
    assert response.status_code == 400
    assert client.get("/products/naltrexone").status_code == 200
