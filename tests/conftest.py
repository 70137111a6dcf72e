"""Shared fixtures: the app on a real database (SQLite file or PostgreSQL), a client, a live
server, a SQL statement counter, and a fresh demo catalog for every test.

SHOP_TEST_DB picks the database: "sqlite" (default) or "postgresql". The PostgreSQL run creates a
database of its own and drops it afterwards.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ["SHOP_CONFIG"] = "testing"
os.environ.setdefault("SHOP_INSTANCE_PATH", tempfile.mkdtemp(prefix="shop-test-instance-"))

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from waitress.server import create_server

from shop import create_app
from shop.catalog.demo import load_demo_catalog
from shop.extensions import db, limiter
from tests.stripe_server import start_localstripe, stop

TEST_DB = os.environ.get("SHOP_TEST_DB", "sqlite")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ARTIFACTS = Path(__file__).parent / "artifacts"


def pytest_report_header(config: pytest.Config) -> str:
    return f"shop test database: {TEST_DB}"


class DatabaseFactory:
    """Makes empty databases of the kind under test, and removes them at the end of the run."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.created: list[str] = []
        self.admin: sa.Engine | None = None
        if TEST_DB == "postgresql":
            self.admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            try:
                with self.admin.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            except sa.exc.OperationalError as error:
                pytest.exit(
                    f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({error.orig}). "
                    "The PostgreSQL half of the suite cannot run: start PostgreSQL or set "
                    "TEST_POSTGRES_URL.",
                    returncode=1,
                )
        elif TEST_DB != "sqlite":
            pytest.exit(f"SHOP_TEST_DB must be sqlite or postgresql, not {TEST_DB!r}", returncode=1)

    def new(self, label: str) -> str:
        if self.admin is None:
            return f"sqlite:///{self.tmp_dir / f'{label}-{secrets.token_hex(4)}.db'}"
        name = f"shop_test_{label}_{os.getpid()}_{secrets.token_hex(4)}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.admin is None:
            return
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("db"))
    yield factory
    factory.drop_all()


def make_app(database_url: str, **overrides: object) -> Flask:
    return create_app({"SQLALCHEMY_DATABASE_URI": database_url, **overrides})


@pytest.fixture(scope="session")
def app(databases: DatabaseFactory) -> Iterator[Flask]:
    application = make_app(databases.new("main"))
    with application.app_context():
        upgrade()  # the schema comes from the migrations, as in production
    yield application
    with application.app_context():
        db.engine.dispose()


def reset_database() -> None:
    """Empty every table and load the demo catalog again."""
    tables = list(reversed(db.metadata.sorted_tables))
    if db.engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in tables)
        db.session.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        for table in tables:
            db.session.execute(table.delete())
    db.session.commit()
    load_demo_catalog()


@pytest.fixture(autouse=True)
def fresh_catalog(request: pytest.FixtureRequest) -> Iterator[None]:
    if "app" not in request.fixturenames:
        yield
        return
    flask_app: Flask = request.getfixturevalue("app")
    with flask_app.app_context():
        reset_database()
        db.session.remove()
        limiter.reset()
    yield


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running localstripe, e.g. "http://127.0.0.1:53211" (its log: localstripe.log
    in the session's temporary directory)."""
    process, base_url = start_localstripe(tmp_path_factory.mktemp("localstripe") / "localstripe.log")
    try:
        yield base_url
    finally:
        stop(process)


@pytest.fixture
def stripe_app(app: Flask, localstripe: str) -> Iterator[Flask]:
    """The app taking payments from the session's localstripe (the default points at the
    development port 8420)."""
    saved = app.config["STRIPE_API_BASE"]
    app.config["STRIPE_API_BASE"] = localstripe
    app.extensions.pop("payment_gateway", None)
    yield app
    app.config["STRIPE_API_BASE"] = saved
    app.extensions.pop("payment_gateway", None)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app
        db.session.remove()


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_statements(app: Flask) -> Callable[[], contextmanager]:
    """`with count_statements() as counter:` counts the SQL statements run inside the block."""

    @contextmanager
    def counting() -> Iterator[StatementCounter]:
        counter = StatementCounter()
        with app.app_context():
            engine = db.engine

        def before(conn, cursor, statement, parameters, context, executemany):
            counter.statements.append(statement)

        sa.event.listen(engine, "before_cursor_execute", before)
        try:
            yield counter
        finally:
            sa.event.remove(engine, "before_cursor_execute", before)

    return counting


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served by waitress (multi-threaded) on a free loopback port."""
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# Accounts ------------------------------------------------------------------------------------------

TEST_PASSWORD = "correct horse battery staple 42"
TOTP_SECRET = "JBSWY3DPEHPK3PXPTESTSECRET2FA7Q4"


@pytest.fixture(scope="session")
def password_hash() -> str:
    from shop.accounts.passwords import hash_password

    return hash_password(TEST_PASSWORD)  # hashed once: scrypt is slow on purpose


@pytest.fixture
def make_user(app: Flask, password_hash: str) -> Callable[..., int]:
    """Create an account directly (not through the form); returns its id."""
    import datetime as dt

    from shop.accounts.models import User
    from shop.accounts.secret_box import seal

    def make(email: str, role: str = "customer", **fields: object) -> int:
        with app.app_context():
            user = User(
                email=email,
                password_hash=password_hash,
                legal_name=fields.pop("legal_name", email.split("@")[0].title()),
                date_of_birth=fields.pop("date_of_birth", dt.date(1980, 1, 1)),
                role=role,
                **fields,
            )
            db.session.add(user)
            if role != "customer":
                db.session.flush()  # the sealed secret is bound to the user's id
                user.totp_secret, user.totp_enabled = seal(user.id, TOTP_SECRET), True
            db.session.commit()
            return user.id

    return make


@pytest.fixture
def users(make_user: Callable[..., int]) -> dict[str, int]:
    return {
        "customer": make_user("customer@example.com"),
        "other_customer": make_user("other@example.com"),
        "pharmacist": make_user("pharmacist@example.com", role="pharmacist"),
        "admin": make_user("admin@example.com", role="admin"),
    }


def totp_now() -> str:
    import pyotp

    return pyotp.TOTP(TOTP_SECRET).now()


def csrf_token(client: FlaskClient, url: str = "/account/sign-in") -> str:
    import re

    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def sign_in(client: FlaskClient, app: Flask, email: str, password: str = TEST_PASSWORD) -> object:
    """Sign in through the real forms, including the second factor for staff."""
    from shop.accounts.models import User

    response = client.post(
        "/account/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_token(client)},
    )
    if response.status_code == 302 and "/sign-in/verify" in response.headers["Location"]:
        with app.app_context():
            # Each test signs staff in afresh; forget the last used step so a code can repeat.
            db.session.execute(sa.update(User).where(User.email == email).values(totp_last_step=None))
            db.session.commit()
        response = client.post(
            "/account/sign-in/verify",
            data={"code": totp_now(), "csrf_token": csrf_token(client, "/account/sign-in/verify")},
        )
    return response


@pytest.fixture
def signed_in(app: Flask, users: dict[str, int]) -> Callable[[str], FlaskClient]:
    """`signed_in("customer")` -> a client signed in as that test user."""
    emails = {
        "customer": "customer@example.com",
        "other_customer": "other@example.com",
        "pharmacist": "pharmacist@example.com",
        "admin": "admin@example.com",
    }

    def make(role: str) -> FlaskClient:
        client = app.test_client()
        response = sign_in(client, app, emails[role])
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return client

    return make
