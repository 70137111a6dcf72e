"""`flask shop ...` commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import AppGroup

if TYPE_CHECKING:
    from shop.orders.staff import ExpiryReport

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
    """Cancel unpaid orders whose time to pay has run out (stock and prescriptions come back); a
    payment begun at Stripe is cancelled there first, or kept if it was authorised at the last second."""
    report = _expire_unpaid()
    click.echo(f"Released {report.cancelled} unpaid order(s).")
    if report.paid:
        click.echo(f"{report.paid} order(s) were paid at the last second and are kept.")
    if report.waiting:
        click.echo(f"Left for the next run (Stripe has not settled them): {', '.join(report.waiting)}.")


def _expire_unpaid() -> ExpiryReport:
    from shop.orders.staff import expire_unpaid
    from shop.payments.gateway import gateway_for_app

    return expire_unpaid(gateway_for_app(current_app))


def _release_expired_job() -> None:
    _expire_unpaid()


@shop_cli.command("write-off-expired")
def write_off_expired() -> None:
    """Write off units of lots past their expiry date (units that orders depend on are held)."""
    from shop.inventory.services import write_off_expired as write_off

    click.echo(f"Wrote off {write_off()} expired unit(s).")


def _write_off_expired_job() -> None:
    from shop.inventory.services import write_off_expired as write_off

    write_off()


def _apply_due_prices_job() -> None:
    from shop.admin.prices import apply_due_price_changes

    apply_due_price_changes()


@shop_cli.command("apply-prices")
def apply_prices() -> None:
    """Apply scheduled price changes that are due (the worker does this every round)."""
    from shop.admin.prices import apply_due_price_changes

    click.echo(f"Applied {apply_due_price_changes()} scheduled price change(s).")


def init_app(app: Flask) -> None:
    from shop.accounts import cli as accounts_cli
    from shop.notifications.worker import PERIODIC_JOBS, worker_command

    shop_cli.add_command(worker_command)
    for job in (_release_expired_job, _write_off_expired_job, _apply_due_prices_job):
        if job not in PERIODIC_JOBS:
            PERIODIC_JOBS.append(job)
    app.cli.add_command(shop_cli)
    accounts_cli.init_app(app)
