"""Application set-up: configuration, error pages, the SQLite settings and declared access rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, abort, request
from flask.testing import FlaskClient

import config
from shop import create_app
from shop.access import access_rule
from shop.catalog.models import Product
from shop.extensions import db
from tests.conftest import DatabaseFactory, make_app


def test_production_refuses_the_default_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://shop@db.internal/shop")
    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", config.DEFAULT_SECRET_KEY)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(config.ProductionConfig)


def test_production_refuses_the_pdf_sandbox_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.ProductionConfig, "PDF_SANDBOX_REQUIRED", False)
    with pytest.raises(RuntimeError, match="PDF_SANDBOX_REQUIRED"):
        create_app(config.ProductionConfig)


def test_production_refuses_a_missing_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 48)
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        create_app(config.ProductionConfig)


def test_production_refuses_a_non_https_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://shop@127.0.0.1/shop")
    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 48)
    monkeypatch.setattr(config.ProductionConfig, "PUBLIC_URL", "http://shop.example")
    with pytest.raises(RuntimeError, match="PUBLIC_URL"):
        create_app(config.ProductionConfig)


def test_production_starts_with_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://shop@127.0.0.1/shop")
    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 48)
    monkeypatch.setattr(config.ProductionConfig, "PUBLIC_URL", "https://shop.example")
    monkeypatch.setattr(config.ProductionConfig, "PRESCRIPTION_ENCRYPTION_KEY", "k" * 43)
    monkeypatch.setattr(config.ProductionConfig, "ACCOUNT_SECRETS_KEY", "k" * 43)
    monkeypatch.setattr(config.ProductionConfig, "MAIL_BACKEND", "smtp")
    monkeypatch.setattr(config.ProductionConfig, "STRIPE_SECRET_KEY", "sk_live_example")
    monkeypatch.setattr(config.ProductionConfig, "STRIPE_API_BASE", None)
    monkeypatch.setattr(
        config.ProductionConfig, "SQLALCHEMY_DATABASE_URI", "postgresql+psycopg://shop@127.0.0.1/shop"
    )
    app = create_app(config.ProductionConfig)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["DEMO_MODE"] is False


def test_unknown_config_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_CONFIG", "staging")
    with pytest.raises(RuntimeError, match="staging"):
        create_app()


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    # Checked in both runs: SQLite is the default whatever database the suite runs on.
    app = make_app(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with app.app_context(), db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_every_endpoint_declares_who_may_use_it(app: Flask) -> None:
    undeclared = [
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and access_rule(app.view_functions[rule.endpoint]) is None
    ]
    assert undeclared == []


def test_404_page_is_in_the_shop_layout(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Page not found" in html and 'class="site-header"' in html


def test_500_page_rolls_back_the_session(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("errors"), PROPAGATE_EXCEPTIONS=False)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()

    @app.get("/boom")
    def boom() -> str:
        # Half a change, then a crash: the change must not be committed by anyone later.
        db.session.add(Product(slug="half-done", name="Half", generic_name="half"))
        db.session.flush()
        raise RuntimeError("boom")

    boom.access_rule = "public"  # type: ignore[attr-defined]

    @app.get("/commit")
    def commit() -> str:
        db.session.commit()
        return "ok"

    with app.test_client() as client:
        response = client.get("/boom")
        assert response.status_code == 500
        assert "Something went wrong" in response.get_data(as_text=True)
        client.get("/commit")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Product)) == 0
        db.engine.dispose()


def side_app(app: Flask) -> Flask:
    """A second app on the same database, free to grow test-only routes."""
    return create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})


def test_http_errors_use_the_layout_too(app: Flask) -> None:
    test_app = side_app(app)

    @test_app.get("/forbidden")
    def forbidden() -> str:
        abort(403)

    response = test_app.test_client().get("/forbidden")
    assert response.status_code == 403
    assert "Not allowed" in response.get_data(as_text=True)


def test_413_page_for_an_oversized_upload(app: Flask) -> None:
    test_app = side_app(app)
    test_app.config["WTF_CSRF_ENABLED"] = False

    @test_app.post("/upload")
    def upload() -> str:
        return str(len(request.form))

    body = b"x" * (test_app.config["MAX_CONTENT_LENGTH"] + 1)
    response = test_app.test_client().post(
        "/upload", data=body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert "File too large" in response.get_data(as_text=True)


def test_a_form_post_without_csrf_token_is_refused(app: Flask) -> None:
    test_app = side_app(app)

    @test_app.post("/change")
    def change() -> str:
        return "changed"

    response = test_app.test_client().post("/change", data={"field": "value"})
    assert response.status_code == 400
    assert "changed" not in response.get_data(as_text=True)
