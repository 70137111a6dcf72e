"""Configuration classes, read from environment variables.

`SHOP_CONFIG` picks the class (development, testing, production); development is the default so
that `make run` works on a fresh machine with SQLite in `instance/`.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("SHOP_INSTANCE_PATH", BASE_DIR / "instance"))

DEFAULT_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105 - a marker production refuses


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'shop.db'}"
    )
    SQLALCHEMY_RECORD_QUERIES = False
    # Up to 5 prescription files of 10 MB each in one upload; larger requests get the 413 page.
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 51 * 1024 * 1024)
    # Seconds a SQLite connection waits for a writer before giving up.
    SQLITE_BUSY_TIMEOUT_SECONDS = _env_int("SQLITE_BUSY_TIMEOUT_SECONDS", 30)

    # Sessions: the cookie holds a random token; the server keeps and can revoke the session.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_IDLE_MINUTES_STAFF = _env_int("SESSION_IDLE_MINUTES_STAFF", 15)
    SESSION_IDLE_MINUTES_CUSTOMER = _env_int("SESSION_IDLE_MINUTES_CUSTOMER", 60)
    SESSION_ABSOLUTE_HOURS = _env_int("SESSION_ABSOLUTE_HOURS", 12)
    PERMANENT_SESSION_LIFETIME = dt.timedelta(hours=SESSION_ABSOLUTE_HOURS)
    # How long the password link in a new staff member's invitation works (once).
    STAFF_INVITATION_HOURS = _env_int("STAFF_INVITATION_HOURS", 72)
    PASSWORD_RESET_MINUTES = _env_int("PASSWORD_RESET_MINUTES", 30)

    # Rate limits (Flask-Limiter). Memory by default; e.g. redis://127.0.0.1:6379/0 to share them
    # between server processes.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    SIGN_IN_LIMIT_PER_ADDRESS = os.environ.get("SIGN_IN_LIMIT_PER_ADDRESS", "30 per 15 minutes")
    SIGN_IN_LIMIT_PER_ACCOUNT = os.environ.get("SIGN_IN_LIMIT_PER_ACCOUNT", "5 per 15 minutes")
    RESET_LIMIT_PER_ADDRESS = os.environ.get("RESET_LIMIT_PER_ADDRESS", "10 per hour")
    RESET_LIMIT_PER_ACCOUNT = os.environ.get("RESET_LIMIT_PER_ACCOUNT", "3 per hour")

    # Prescriptions: validity after the date written, how long a pharmacist's claim lasts, and
    # where documents are stored (encrypted; the key never goes in the database).
    PRESCRIPTION_VALIDITY_DAYS = _env_int("PRESCRIPTION_VALIDITY_DAYS", 365)
    PRESCRIPTION_CLAIM_MINUTES = _env_int("PRESCRIPTION_CLAIM_MINUTES", 30)
    PRESCRIPTION_STORAGE = os.environ.get("PRESCRIPTION_STORAGE", "local")
    PRESCRIPTION_STORAGE_PATH = os.environ.get("PRESCRIPTION_STORAGE_PATH") or None
    PRESCRIPTION_S3_BUCKET = os.environ.get("PRESCRIPTION_S3_BUCKET", "")
    PRESCRIPTION_S3_ENDPOINT_URL = os.environ.get("PRESCRIPTION_S3_ENDPOINT_URL") or None
    PRESCRIPTION_S3_REGION = os.environ.get("PRESCRIPTION_S3_REGION", "us-east-1")
    PRESCRIPTION_ENCRYPTION_KEY = os.environ.get("PRESCRIPTION_ENCRYPTION_KEY", "")
    PRESCRIPTION_KEY_AUTOCREATE = False
    # Uploaded PDFs are parsed and drawn in a child process (shop/prescriptions/pdf_sandbox.py):
    # it is killed after this many seconds (its CPU time is capped to the same, rounded up) and
    # its address space is capped at this many MB, so a hostile PDF cannot hang or bloat a worker.
    PDF_RENDER_TIMEOUT_SECONDS = float(os.environ.get("PDF_RENDER_TIMEOUT_SECONDS") or 15)
    PDF_RENDER_MEMORY_MB = _env_int("PDF_RENDER_MEMORY_MB", 512)
    # That child shuts itself in (Landlock, seccomp: no file, socket or process) before it reads the
    # PDF, and where the kernel cannot do that every PDF is refused. false lets a development machine
    # without Landlock check PDFs unconfined (with a warning each time); never in production.
    PDF_SANDBOX_REQUIRED = os.environ.get("PDF_SANDBOX_REQUIRED", "").lower() not in (
        "0", "false", "no", "off",
    )
    # Encrypts two-factor (TOTP) secrets in the database; a key of its own, never in the database.
    ACCOUNT_SECRETS_KEY = os.environ.get("ACCOUNT_SECRETS_KEY", "")
    ACCOUNT_SECRETS_KEY_AUTOCREATE = False

    # Email: "log" only logs (development); "smtp" sends through MAIL_HOST.
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "log")
    MAIL_HOST = os.environ.get("MAIL_HOST", "localhost")
    MAIL_PORT = _env_int("MAIL_PORT", 25)
    MAIL_SENDER = os.environ.get("MAIL_SENDER", "")
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_STARTTLS = os.environ.get("MAIL_STARTTLS", "") in ("1", "true", "yes", "on")
    MAIL_TIMEOUT_SECONDS = _env_int("MAIL_TIMEOUT_SECONDS", 10)

    # Stripe. STRIPE_API_BASE points the official client at localstripe in development.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "sk_test_localstripe")
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "pk_test_localstripe")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_localstripe")
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:8420") or None

    HSTS = False
    DEV_MAILBOX = False
    # Links in emails are built on this address, never on the request's Host header (which an
    # attacker can set to send a victim's reset link to their own server).
    PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://127.0.0.1:5000")

    CURRENCY = os.environ.get("SHOP_CURRENCY", "USD")
    SHIPPING_CENTS = _env_int("SHIPPING_CENTS", 995)
    FREE_SHIPPING_FROM_CENTS = _env_int("FREE_SHIPPING_FROM_CENTS", 10_000)
    # An order not paid within this time gives back its stock and prescription quantity.
    ORDER_PAY_WITHIN_MINUTES = _env_int("ORDER_PAY_WITHIN_MINUTES", 60)
    # A package with this many packs or fewer still available shows "Only N left".
    LOW_STOCK_PACKS = _env_int("LOW_STOCK_PACKS", 5)

    # What a legitimate pharmacy shows on every page. Demo values until configured.
    PHARMACY_NAME = os.environ.get("PHARMACY_NAME", "Clearwater Pharmacy (demo)")
    PHARMACY_ADDRESS = os.environ.get(
        "PHARMACY_ADDRESS", "120 Harbor Street, Suite 4, Portland, OR 97204, USA"
    )
    PHARMACY_PHONE = os.environ.get("PHARMACY_PHONE", "+1 (503) 555-0142")
    PHARMACY_EMAIL = os.environ.get("PHARMACY_EMAIL", "pharmacist@clearwater.example")
    PHARMACY_LICENCE = os.environ.get("PHARMACY_LICENCE", "Oregon Board of Pharmacy RP-0000000 (demo)")
    PHARMACIST_IN_CHARGE = os.environ.get(
        "PHARMACIST_IN_CHARGE", "Dana Whitfield, PharmD, licence RPH-0000000 (demo)"
    )
    PHARMACY_HOURS = os.environ.get("PHARMACY_HOURS", "Monday to Friday, 9:00 to 18:00 Pacific")

    DEMO_MODE = False


class DevelopmentConfig(Config):
    DEBUG = False  # the Werkzeug debugger is never exposed; `make run` serves with waitress
    DEMO_MODE = True
    DEV_MAILBOX = True
    PRESCRIPTION_KEY_AUTOCREATE = True  # a key file in instance/, made on first use
    ACCOUNT_SECRETS_KEY_AUTOCREATE = True  # likewise instance/account-secrets.key


class TestingConfig(Config):
    TESTING = True
    PUBLIC_URL = "http://localhost"
    SECRET_KEY = "testing-secret-key"  # noqa: S105
    WTF_CSRF_ENABLED = True
    DEMO_MODE = True
    DEV_MAILBOX = True
    PRESCRIPTION_KEY_AUTOCREATE = True  # a key file in instance/, made on first use
    ACCOUNT_SECRETS_KEY_AUTOCREATE = True  # likewise instance/account-secrets.key


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    HSTS = True
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE") or None  # real Stripe unless told

    @classmethod
    def validate(cls, settings: dict) -> None:
        """Refuse to start with development defaults."""
        problems = []
        if settings.get("SECRET_KEY") in (None, "", DEFAULT_SECRET_KEY):
            problems.append("SECRET_KEY must be set to a long random value")
        elif len(str(settings["SECRET_KEY"])) < 32:
            problems.append("SECRET_KEY must be at least 32 characters")
        if not os.environ.get("DATABASE_URL"):
            problems.append("DATABASE_URL must name the production database")
        if not settings.get("PRESCRIPTION_ENCRYPTION_KEY"):
            problems.append("PRESCRIPTION_ENCRYPTION_KEY must hold the documents' encryption key")
        if not settings.get("ACCOUNT_SECRETS_KEY"):
            problems.append("ACCOUNT_SECRETS_KEY must hold the two-factor secrets' encryption key")
        else:
            from shop.accounts.secret_box import decode_key  # here: config is imported before shop

            try:
                decode_key(settings["ACCOUNT_SECRETS_KEY"], "ACCOUNT_SECRETS_KEY")
            except RuntimeError as error:
                problems.append(str(error))
        if not settings.get("PDF_SANDBOX_REQUIRED"):
            problems.append("PDF_SANDBOX_REQUIRED must stay true in production (hostile PDFs)")
        if settings.get("DEV_MAILBOX"):
            problems.append("DEV_MAILBOX must be off in production (it shows every email sent)")
        if settings.get("MAIL_BACKEND") != "smtp":
            problems.append("MAIL_BACKEND must be smtp (customers must receive their emails)")
        if str(settings.get("STRIPE_SECRET_KEY", "")).endswith("localstripe") or settings.get(
            "STRIPE_API_BASE"
        ):
            problems.append("STRIPE_SECRET_KEY must be a real key and STRIPE_API_BASE unset")
        if not str(settings.get("PUBLIC_URL", "")).startswith("https://"):
            problems.append("PUBLIC_URL must be the shop's https:// address")
        if problems:
            raise RuntimeError("Production configuration refused: " + "; ".join(problems))


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    name = os.environ.get("SHOP_CONFIG", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(
            f"SHOP_CONFIG={name!r} is not one of {', '.join(sorted(CONFIGS))}"
        ) from None
