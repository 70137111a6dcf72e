"""The schema comes from migrations: they apply, reverse and re-apply cleanly, and match the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from shop.extensions import db
from tests.conftest import DatabaseFactory, make_app


def table_names() -> set[str]:
    return set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade_on_an_empty_database(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("migrations"))
    with app.app_context():
        assert table_names() == set()
        upgrade()
        assert table_names() == set(db.metadata.tables)
        downgrade(revision="base")
        assert table_names() == set()
        upgrade()
        assert table_names() == set(db.metadata.tables)
        db.engine.dispose()


def test_models_match_migrations(databases: DatabaseFactory) -> None:
    app = make_app(databases.new("autogen"))
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert differences == [], f"models and migrations differ; run 'flask db migrate': {differences}"
