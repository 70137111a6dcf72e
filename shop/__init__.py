"""The pharmacy storefront application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

import config as shop_config


def create_app(config: type[shop_config.Config] | Mapping[str, Any] | None = None) -> Flask:
    """Build the application. No side effects: no migrations, no network, no prompts.

    `config` is a config class, or a mapping of overrides applied on top of the class chosen by
    the environment (SHOP_CONFIG).
    """
    app = Flask(
        __name__,
        instance_path=str(shop_config.INSTANCE_DIR),
        template_folder=str(shop_config.BASE_DIR / "templates"),
        static_folder=str(shop_config.BASE_DIR / "static"),
    )
    load_config(app, config)
    register_extensions(app)
    register_converters(app)
    register_blueprints(app)
    register_request_rules(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_commands(app)
    return app


def load_config(app: Flask, config: type[shop_config.Config] | Mapping[str, Any] | None) -> None:
    if isinstance(config, type):
        config_class, overrides = config, {}
    else:
        config_class, overrides = shop_config.config_from_env(), dict(config or {})
    app.config.from_object(config_class)
    app.config.update(overrides)
    validate = getattr(config_class, "validate", None)
    if validate is not None:
        validate(app.config)


def register_extensions(app: Flask) -> None:
    from shop import database, models  # noqa: F401 - models registers every table
    from shop.accounts import login
    from shop.extensions import csrf, db, limiter, migrate

    database.init_app(app)
    migrate.init_app(app, db, directory=str(shop_config.BASE_DIR / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    login.init_app(app)


def register_converters(app: Flask) -> None:
    from shop.numbers import IdConverter

    # Replaces Werkzeug's `int` so every `<int:...>` route takes only ids the database can hold.
    app.url_map.converters["int"] = IdConverter


def register_blueprints(app: Flask) -> None:
    from shop.accounts.profile_routes import bp as profile_bp
    from shop.accounts.routes import bp as accounts_bp
    from shop.admin.catalog_routes import bp as admin_catalog_bp
    from shop.admin.price_routes import bp as admin_prices_bp
    from shop.admin.routes import bp as admin_bp
    from shop.admin.stock_routes import bp as admin_stock_bp
    from shop.admin.user_routes import bp as admin_users_bp
    from shop.cart.routes import bp as cart_bp
    from shop.catalog.routes import bp as catalog_bp
    from shop.notifications.routes import bp as notifications_bp
    from shop.orders.routes import bp as orders_bp
    from shop.orders.routes import checkout_bp
    from shop.orders.staff_routes import bp as staff_orders_bp
    from shop.pages.routes import bp as pages_bp
    from shop.payments.routes import bp as payments_bp
    from shop.prescriptions.pharmacy_routes import bp as pharmacy_bp
    from shop.prescriptions.routes import bp as prescriptions_bp

    for blueprint in (catalog_bp, pages_bp, accounts_bp, profile_bp, admin_bp, notifications_bp,
                      prescriptions_bp, pharmacy_bp, cart_bp, checkout_bp, orders_bp, payments_bp,
                      staff_orders_bp, admin_prices_bp, admin_stock_bp, admin_catalog_bp, admin_users_bp):
        app.register_blueprint(blueprint)


def register_request_rules(app: Flask) -> None:
    from shop import inputs

    inputs.init_app(app)


def register_errorhandlers(app: Flask) -> None:
    from shop import errors, security

    errors.init_app(app)
    security.init_app(app)


def register_template_helpers(app: Flask) -> None:
    from shop import templating

    templating.init_app(app)


def register_commands(app: Flask) -> None:
    from shop import cli

    cli.init_app(app)
