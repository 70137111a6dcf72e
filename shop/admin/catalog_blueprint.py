"""The admin_catalog blueprint, and what its two route modules share: catalog_routes (products,
brand names, strengths) and monograph_routes (monographs and everything in them).

catalog_routes imports monograph_routes, so registering catalog_routes.bp registers both.

A save of a product, a monograph or a section that someone else saved since the form was read is
refused with 409: the form comes back with the admin's typed text, the other change beside it and
the version now, so saving again replaces the other change deliberately.
"""

from __future__ import annotations

from flask import Blueprint, abort, request
from flask_wtf import FlaskForm
from wtforms import Field

from shop.accounts.forms import ConfirmForm
from shop.admin.versions import EditConflict
from shop.form_errors import apply_errors
from shop.numbers import INT_MAX, parse_int

bp = Blueprint("admin_catalog", __name__, url_prefix="/admin/catalog")


def confirmed() -> None:
    """A button-only POST: :raise 400: without a valid CSRF token."""
    if not ConfirmForm().validate_on_submit():
        abort(400)


def form_status() -> int:
    """A form page's status: 422 when it comes back from a POST (the input was refused)."""
    return 422 if request.method == "POST" else 200


MAX_VERSION = INT_MAX


def seen_version(field: Field) -> int:
    """The version the form was read at. :raise 400: none, or not a number (not our form)."""
    version = parse_int(field.data, minimum=0)  # beyond the column's range: not a version we wrote
    if version is None:
        abort(400)
    return version


def show_conflict(form: FlaskForm, conflict: EditConflict) -> None:
    """Keep the typed text, mark what the other save changed, and carry the version now: saving
    again from this form replaces the other change on purpose."""
    form["version"].data = str(conflict.version)
    apply_errors(form, conflict.errors)
