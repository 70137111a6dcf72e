"""`flask shop ...` commands."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

shop_cli = AppGroup("shop", help="Pharmacy storefront commands.")


@shop_cli.command("load-demo")
def load_demo() -> None:
    """Load the demo catalog and monographs (safe to run again: adds only what is missing)."""
    from shop.accounts.demo import load_demo_accounts
    from shop.catalog.demo import load_demo_catalog

    report = load_demo_catalog()
    click.echo(f"Demo data: {report}.")
    if current_app.config.get("DEMO_MODE"):
        click.echo(f"Demo accounts: {load_demo_accounts()} added (see README for sign-in details).")


def init_app(app: Flask) -> None:
    from shop.accounts import cli as accounts_cli
    from shop.notifications.worker import worker_command

    shop_cli.add_command(worker_command)
    app.cli.add_command(shop_cli)
    accounts_cli.init_app(app)
