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


@shop_cli.command("release-expired")
def release_expired() -> None:
    """Cancel unpaid orders whose time to pay has run out (stock and prescriptions come back)."""
    from shop.orders.services import release_expired as release

    click.echo(f"Released {release()} unpaid order(s).")


def _release_expired_job() -> None:
    from shop.orders.services import release_expired as release

    release()


def init_app(app: Flask) -> None:
    from shop.accounts import cli as accounts_cli
    from shop.notifications.worker import PERIODIC_JOBS, worker_command

    shop_cli.add_command(worker_command)
    if _release_expired_job not in PERIODIC_JOBS:
        PERIODIC_JOBS.append(_release_expired_job)
    app.cli.add_command(shop_cli)
    accounts_cli.init_app(app)
