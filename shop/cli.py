"""`flask shop ...` commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

shop_cli = AppGroup("shop", help="Pharmacy storefront commands.")


@shop_cli.command("load-demo")
def load_demo() -> None:
    """Load the demo catalog and monographs (safe to run again: adds only what is missing)."""
    from shop.catalog.demo import load_demo_catalog

    report = load_demo_catalog()
    click.echo(f"Demo data: {report}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(shop_cli)
