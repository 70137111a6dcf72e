"""Admin monograph editing, on the admin_catalog blueprint: new monographs, their details, review,
sections (with a preview), safety entries, uses, dosing rows and questions. The rules live in
monograph_edit and monograph_rows, the forms in catalog_forms.

Safety entries, uses, dosing rows and questions are versioned like sections: a stale save is a 409 with
the typed values kept and the other admin's beside them; a stale removal is refused with a message and
the row stays. Moves are not version-checked (see monograph_rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response

from shop import access
from shop.accounts.forms import ConfirmForm
from shop.admin import monograph_edit as monographs
from shop.admin import monograph_rows
from shop.admin.catalog_blueprint import bp, confirmed, form_status, seen_version, show_conflict
from shop.admin.catalog_forms import (
    ROW_EDIT_FORMS,
    ROW_FORMS,
    DetailsForm,
    NewMonographForm,
    RemoveForm,
    ReviewForm,
    SafetyEditForm,
    SafetyForm,
    SectionForm,
    row_fields,
    row_form_data,
)
from shop.admin.common import Refused, or_404
from shop.admin.versions import EditConflict
from shop.catalog.models import Monograph, SafetyEntry
from shop.extensions import db
from shop.form_errors import apply_errors
from shop.markdown import render_markdown

_me = access.me


# Monographs ----------------------------------------------------------------------------------------


@bp.get("/monographs")
@access.admin
def monograph_list() -> str:
    return render_template("admin/catalog/monograph_list.html", monographs=monographs.all_monographs())


@bp.route("/monographs/new", methods=["GET", "POST"])
@access.admin
def monograph_new() -> Any:
    form = NewMonographForm()
    if form.validate_on_submit():
        fields = monographs.NewMonographFields(
            slug=form.slug.data or "", title=form.title.data or "", drug_name=form.drug_name.data or "",
            drug_class=form.drug_class.data or "", summary=form.summary.data or "",
            last_reviewed=form.last_reviewed.data, reviewed_by=form.reviewed_by.data or "")
        try:
            monograph = monographs.create_monograph(_me(), fields)
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"The {monograph.title} monograph is created with its {len(monograph.sections)} sections "
                  "still empty: write them one by one below, then add its uses, doses and safety entries.",
                  "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph.id))
    return render_template("admin/catalog/monograph_new.html", form=form), form_status()


def _monograph_or_404(monograph_id: int) -> Monograph:
    return or_404(monographs.monograph_for_edit(monograph_id))


def _render_monograph(monograph: Monograph, *, section_form: SectionForm | None = None, section_key: str = "",
                      preview: Markup | None = None, safety_form: SafetyForm | None = None,
                      review_form: ReviewForm | None = None, details_form: DetailsForm | None = None,
                      status: int = 200) -> tuple[str, int]:
    """The monograph editor; a posted form (with its typed text and errors) replaces its stored one."""
    forms = {s.key: SectionForm(formdata=None, prefix=f"s-{s.key}", title=s.title, body=s.body_markdown,
                                version=str(s.version)) for s in monograph.sections}
    if section_form is not None:
        forms[section_key] = section_form
    stored = {"formdata": None, "version": str(monograph.version)}
    return render_template(
        "admin/catalog/monograph_edit.html", monograph=monograph, section_forms=forms,
        rendered={s.key: render_markdown(s.body_markdown) for s in monograph.sections},
        preview_key=section_key if preview is not None else None, preview=preview,
        conflict_key=section_key if status == 409 else None,
        details_form=details_form or DetailsForm(prefix="details", title=monograph.title,
                                                 drug_name=monograph.drug_name,
                                                 drug_class=monograph.drug_class, summary=monograph.summary,
                                                 **stored),
        review_form=review_form or ReviewForm(prefix="review", last_reviewed=monograph.last_reviewed,
                                              reviewed_by=monograph.reviewed_by, **stored),
        safety_form=safety_form or SafetyForm(formdata=None, prefix="safety"),
        confirm=ConfirmForm(), kinds=monographs.SAFETY_KINDS,
    ), status


@bp.get("/monographs/<int:monograph_id>")
@access.admin
def monograph_edit(monograph_id: int) -> Any:
    """:raise 404: no such monograph."""
    return _render_monograph(_monograph_or_404(monograph_id))


def _save_monograph_form(monograph_id: int, form: FlaskForm, save: Callable[[int], object], done: str,
                         form_name: str) -> Any:
    """Save the details or the review form: 422 on bad input, 409 when someone saved meanwhile.
    :raise 404: no such monograph."""
    monograph = _monograph_or_404(monograph_id)
    if form.validate_on_submit():
        try:
            save(seen_version(form["version"]))
        except LookupError:
            abort(404)
        except EditConflict as conflict:
            show_conflict(form, conflict)
            return _render_monograph(_monograph_or_404(monograph_id), status=409, **{form_name: form})
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(done, "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id))
    return _render_monograph(monograph, status=422, **{form_name: form})


@bp.post("/monographs/<int:monograph_id>/details")
@access.admin
def monograph_details(monograph_id: int) -> Any:
    """:raise 404: no such monograph. :raise 400: no version."""
    form = DetailsForm(prefix="details")
    fields = monographs.DetailsFields(title=form.title.data or "", drug_name=form.drug_name.data or "",
                                      drug_class=form.drug_class.data or "", summary=form.summary.data or "")
    return _save_monograph_form(
        monograph_id, form, lambda seen: monographs.update_details(_me(), monograph_id, fields, seen),
        "Details saved: the public page shows them now.", "details_form")


@bp.post("/monographs/<int:monograph_id>/review")
@access.admin
def review(monograph_id: int) -> Any:
    """:raise 404: no such monograph. :raise 400: no version."""
    form = ReviewForm(prefix="review")
    return _save_monograph_form(
        monograph_id, form, lambda seen: monographs.set_review(_me(), monograph_id, form.last_reviewed.data,
                                                               form.reviewed_by.data or "", seen),
        "Review date and reviewer saved.", "review_form")


@bp.post("/monographs/<int:monograph_id>/sections/<key>")
@access.admin
def section(monograph_id: int, key: str) -> Any:
    """Preview (nothing saved) or save one section. :raise 404: no such monograph or section.
    :raise 400: a save without a version."""
    monograph = _monograph_or_404(monograph_id)
    if key not in {s.key for s in monograph.sections}:
        abort(404)
    form = SectionForm(prefix=f"s-{key}")
    if request.form.get("action") == "preview":
        form.validate_on_submit()  # shows length errors beside the fields; a preview never saves
        return _render_monograph(monograph, section_form=form, section_key=key,
                                 preview=render_markdown(form.body.data or ""))
    if form.validate_on_submit():
        try:
            monographs.update_section(_me(), monograph_id, key, form.title.data or "", form.body.data or "",
                                      seen_version(form.version))
        except LookupError:
            abort(404)
        except EditConflict as conflict:
            show_conflict(form, conflict)
            return _render_monograph(_monograph_or_404(monograph_id), section_form=form, section_key=key,
                                     status=409)
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"Section {form.title.data!r} saved: the public page shows it now.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=f"section-{key}"))
    return _render_monograph(_monograph_or_404(monograph_id), section_form=form, section_key=key, status=422)


# Safety entries ------------------------------------------------------------------------------------


def _removal_version() -> int:
    """The version the row of a remove button was read at (after confirmed()). :raise 400: none."""
    return seen_version(RemoveForm().version)


def _safety_fields(form: SafetyForm) -> monographs.SafetyFields:
    return monographs.SafetyFields(kind=form.kind.data or "", term=form.term.data or "",
                                   severity=form.severity.data or "", note=form.note.data or "",
                                   match_terms=form.match_terms.data or "")


@bp.post("/monographs/<int:monograph_id>/safety")
@access.admin
def safety_add(monograph_id: int) -> Any:
    """:raise 404: no such monograph."""
    monograph = _monograph_or_404(monograph_id)
    form = SafetyForm(prefix="safety")
    if form.validate_on_submit():
        try:
            entry = monographs.add_safety_entry(_me(), monograph_id, _safety_fields(form))
        except LookupError:
            abort(404)
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash(f"{monographs.SAFETY_KINDS[entry.kind]} {entry.term!r} added: the pharmacist's safety "
                  "check uses it from now on.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))
    return _render_monograph(monograph, safety_form=form, status=422)


def _entry_or_404(monograph_id: int, entry_id: int) -> SafetyEntry:
    entry = db.session.get(SafetyEntry, entry_id)
    if entry is None or entry.monograph_id != monograph_id:
        abort(404)
    return entry


@bp.route("/monographs/<int:monograph_id>/safety/<int:entry_id>", methods=["GET", "POST"])
@access.admin
def safety_edit(monograph_id: int, entry_id: int) -> Any:
    """:raise 404: no such safety entry of this monograph. :raise 400: a save without a version."""
    entry = _entry_or_404(monograph_id, entry_id)
    if request.method == "GET":
        form = SafetyEditForm(kind=entry.kind, term=entry.term, severity=entry.severity, note=entry.note,
                              match_terms=entry.match_terms, version=str(entry.version))
    else:
        form = SafetyEditForm()
    status = form_status()
    if form.validate_on_submit():
        try:
            monographs.update_safety_entry(_me(), monograph_id, entry_id, _safety_fields(form),
                                           seen_version(form.version))
        except LookupError:
            abort(404)
        except EditConflict as conflict:
            show_conflict(form, conflict)
            status = 409
        except Refused as error:
            apply_errors(form, error.errors)
        else:
            flash("Safety entry saved: the pharmacist's safety check uses it from now on.", "success")
            return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))
    entry = _entry_or_404(monograph_id, entry_id)
    return render_template("admin/catalog/safety_form.html", entry=entry,
                           monograph=db.session.get(Monograph, monograph_id), form=form), status


@bp.post("/monographs/<int:monograph_id>/safety/<int:entry_id>/remove")
@access.admin
def safety_remove(monograph_id: int, entry_id: int) -> Response:
    """:raise 404: no such safety entry of this monograph. :raise 400: no version."""
    confirmed()
    _entry_or_404(monograph_id, entry_id)
    seen = _removal_version()
    try:
        term = monographs.remove_safety_entry(_me(), monograph_id, entry_id, seen)
    except LookupError:
        abort(404)
    except Refused as error:
        flash(str(error), "error")
    else:
        flash(f"{term!r} removed: the safety check no longer uses it.", "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor="safety"))


# Uses, dosing rows and questions -------------------------------------------------------------------

ROW_URL = "/monographs/<int:monograph_id>/<any(uses, dosing, faq):kind>"


def _row_anchor(kind: str, row: Any) -> str:
    """Where the row's table is on the monograph editor."""
    if kind == "uses":
        return "uses-approved" if row.approved else "uses-off-label"
    return "dosing-rows" if kind == "dosing" else "faq"


def _row_or_404(monograph_id: int, kind: str, row_id: int) -> Any:
    row = db.session.get(monograph_rows.ROW_KINDS[kind].model, row_id)
    if row is None or row.monograph_id != monograph_id:
        abort(404)
    return row


def _row_page(monograph_id: int, kind: str, row: Any | None) -> Any:
    """The add (row None) or edit page of a use, dosing row or question. "preview" shows a question's
    answer as the public page will, saving nothing. :raise 404: no such monograph.
    :raise 400: a save of an existing row without a version."""
    monograph = _monograph_or_404(monograph_id)
    row_kind = monograph_rows.ROW_KINDS[kind]
    form_class = ROW_FORMS[kind] if row is None else ROW_EDIT_FORMS[kind]
    if request.method == "POST":
        form = form_class()
    elif row is not None:
        form = form_class(formdata=None, **row_form_data(kind, row))
    else:  # a new use starts approved or off-label as the link that led here says
        form = form_class(formdata=None, approved=request.args.get("approved", "approved"))
    preview, conflict = None, False
    if form.validate_on_submit():
        if request.form.get("action") == "preview" and "answer" in form:
            preview = render_markdown(form["answer"].data or "")
        else:
            try:
                if row is None:
                    saved = monograph_rows.add_row(_me(), monograph_id, row_kind, row_fields(form))
                else:
                    saved = monograph_rows.update_row(_me(), monograph_id, row_kind, row.id, row_fields(form),
                                                      seen_version(form["version"]))
            except LookupError:
                abort(404)
            except EditConflict as error:
                show_conflict(form, error)
                conflict = True
            except Refused as error:
                apply_errors(form, error.errors)
            else:
                flash(f"{row_kind.noun.capitalize()} {row_kind.name_of(saved)!r} "
                      f"{'added' if row is None else 'saved'}: the public page shows it now.", "success")
                return redirect(url_for(".monograph_edit", monograph_id=monograph_id,
                                        _anchor=_row_anchor(kind, saved)))
    if conflict:
        status = 409
    else:
        status = 200 if request.method == "GET" or (preview is not None and not form.errors) else 422
    return render_template("admin/catalog/row_form.html", monograph=monograph, kind=kind, noun=row_kind.noun,
                           row=row, name=row_kind.name_of(row) if row is not None else "", form=form,
                           preview=preview, conflict=conflict), status


@bp.route(f"{ROW_URL}/new", methods=["GET", "POST"])
@access.admin
def row_new(monograph_id: int, kind: str) -> Any:
    """Add a use, dosing row or question. :raise 404: no such monograph."""
    return _row_page(monograph_id, kind, None)


@bp.route(f"{ROW_URL}/<int:row_id>", methods=["GET", "POST"])
@access.admin
def row_edit(monograph_id: int, kind: str, row_id: int) -> Any:
    """Edit a use, dosing row or question. :raise 404: no such row of this monograph."""
    return _row_page(monograph_id, kind, _row_or_404(monograph_id, kind, row_id))


@bp.post(f"{ROW_URL}/<int:row_id>/remove")
@access.admin
def row_remove(monograph_id: int, kind: str, row_id: int) -> Response:
    """:raise 404: no such row of this monograph. :raise 400: no version."""
    confirmed()
    anchor = _row_anchor(kind, _row_or_404(monograph_id, kind, row_id))
    seen = _removal_version()
    row_kind = monograph_rows.ROW_KINDS[kind]
    try:
        name = monograph_rows.remove_row(_me(), monograph_id, row_kind, row_id, seen)
    except LookupError:
        abort(404)
    except Refused as error:
        flash(str(error), "error")
    else:
        flash(f"{row_kind.noun.capitalize()} {name!r} removed: the public page no longer shows it.",
              "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=anchor))


@bp.post(f"{ROW_URL}/<int:row_id>/move")
@access.admin
def row_move(monograph_id: int, kind: str, row_id: int) -> Response:
    """Move a row up or down its table; no version is checked, as a move changes only the order (see
    monograph_rows). :raise 404: no such row of this monograph.
    :raise 400: a direction other than up or down."""
    confirmed()
    direction = request.form.get("direction")
    if direction not in ("up", "down"):
        abort(400)
    anchor = _row_anchor(kind, _row_or_404(monograph_id, kind, row_id))
    try:
        name = monograph_rows.move_row(_me(), monograph_id, monograph_rows.ROW_KINDS[kind], row_id,
                                       direction == "up")
    except LookupError:
        abort(404)
    except Refused as error:
        flash(str(error), "info")
    else:
        flash(f"{name!r} moved {direction}.", "success")
    return redirect(url_for(".monograph_edit", monograph_id=monograph_id, _anchor=anchor))
