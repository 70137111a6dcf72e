"""Show a service's per-field errors on a WTForms form."""

from __future__ import annotations

from collections.abc import Mapping

from flask import flash
from flask_wtf import FlaskForm


def apply_errors(form: FlaskForm, errors: Mapping[str, str]) -> None:
    """Add each message to its field; one without a field on this form becomes a flash message."""
    for name, message in errors.items():
        field = getattr(form, name, None)
        if field is not None and hasattr(field, "errors"):
            field.errors = [*field.errors, message]
        else:
            flash(message, "error")
