"""Admin pages."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from shop import access
from shop.admin import audit_view
from shop.dates import parse_date
from shop.numbers import parse_id

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@access.admin
def dashboard() -> str:
    return render_template("admin/dashboard.html")


@bp.get("/audit")
@access.admin
def audit_log() -> str:
    """The audit log in plain words, newest first, filtered by actor, kind of action, action and date;
    keyset pagination."""
    before = parse_id(request.args.get("before"))  # a bad cursor is the first page
    kind = request.args.get("kind", "")
    filters = audit_view.Filters(
        actor=request.args.get("actor", "").strip().lower()[:254],
        kind=kind if kind in audit_view.KINDS else "",
        action=request.args.get("action", "").strip()[:60],
        date_from=parse_date(request.args.get("from")), date_to=parse_date(request.args.get("to")))
    # Admins may see whose prescription an entry is about.
    shown = audit_view.page(filters, before, currency=current_app.config["CURRENCY"], may_see_patients=True)
    return render_template("admin/audit.html", page=shown, filters=filters.query_args(),
                           kinds={key: label for key, (label, _) in audit_view.KINDS.items()})
