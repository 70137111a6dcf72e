"""About and licensing, notice of privacy practices, terms."""

from __future__ import annotations

from flask import Blueprint, render_template

from shop.access import public

bp = Blueprint("pages", __name__)


@bp.get("/about")
@public
def about() -> str:
    return render_template("pages/about.html")


@bp.get("/privacy")
@public
def privacy() -> str:
    return render_template("pages/privacy.html")


@bp.get("/terms")
@public
def terms() -> str:
    return render_template("pages/terms.html")
