"""`flask users ...`: the only way, besides an admin, to create staff accounts."""

from __future__ import annotations

import datetime as dt

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from shop.accounts import services
from shop.accounts.models import ROLES, User
from shop.extensions import db

users_cli = AppGroup("users", help="Manage accounts.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", "legal_name", required=True, help="Full legal name.")
@click.option("--role", type=click.Choice(ROLES), default="customer", show_default=True)
@click.option("--date-of-birth", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
@click.password_option(prompt="Password", help="Prompted for (hidden) when not given.")
def create(email: str, legal_name: str, role: str, date_of_birth: dt.datetime | None,
           password: str) -> None:
    """Create an account. Staff sign in with two-factor authentication, set up at first sign-in."""
    try:
        user = services.create_user(
            email=email,
            password=password,
            legal_name=legal_name,
            date_of_birth=date_of_birth.date() if date_of_birth else None,
            role=role,
        )
    except services.FormErrors as error:
        for name, message in error.errors.items():
            click.echo(f"{name}: {message}", err=True)
        raise SystemExit(1) from None
    click.echo(f"Created {user.role} account {user.email} (id {user.id}).")


@users_cli.command("set-role")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
def set_role(email: str, role: str) -> None:
    """Change an account's role (ends its sessions). Recorded in the audit log as done by the CLI."""
    user = services.find_user_by_email(email)
    if user is None:
        raise click.ClickException(f"No account {email}")
    if user.role == "admin" and role != "admin" and user.active and db.session.scalar(
        sa.select(sa.func.count(User.id)).where(User.role == "admin", User.active)) <= 1:
        raise click.ClickException(f"{user.email} is the last active admin: make another admin first")
    cli_actor = _CliActor()
    services.set_role(user, role, actor=cli_actor)  # type: ignore[arg-type]
    click.echo(f"{user.email} is now {role}.")


@users_cli.command("list")
def list_users() -> None:
    for user in db.session.scalars(sa.select(User).order_by(User.id)):
        state = "active" if user.active else "disabled"
        click.echo(f"{user.id:>5}  {user.role:<10}  {state:<8}  {user.email}")


class _CliActor:
    """Stands for the operator at the console in audit rows."""

    id = None
    email = "cli"
    role = "operator"


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
