"""Accessibility helpers of the layout, and the Erklärung zur Barrierefreiheit (BITV §7).

The layout (``kim/base.html``) asks :func:`form_errors` for the error summary shown at
the top of a form after a failed save, and :func:`page_kind` for the part of the
page title that says where the user is (list, new, edit, details).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, render_template, request

bp = Blueprint("accessibility", __name__)

#: What a Flask-Admin view shows, by the end of its endpoint (for page titles).
PAGE_KINDS = {
    "index_view": "Liste",
    "create_view": "Neuer Eintrag",
    "edit_view": "Bearbeiten",
    "details_view": "Details",
}


def form_errors(form: Any) -> list[tuple[str, str, str]]:
    """(field id, label, message) of each error of ``form``, in the form's order.

    Errors of nested forms (dicts or lists) are left to the fields themselves: their
    messages are strings only at the top level.
    """
    if form is None or not hasattr(form, "errors") or not hasattr(form, "__iter__"):
        return []
    errors = []
    for field in form:
        for message in getattr(field, "errors", None) or ():
            if isinstance(message, str):
                label = getattr(getattr(field, "label", None), "text", field.name)
                errors.append((field.id, str(label), message))
    return errors


def page_kind(model: Any = None) -> str:
    """``Bearbeiten: Raum A – `` for an edit page, ``Liste: `` for a list, else ``""``."""
    endpoint = request.endpoint or ""
    kind = PAGE_KINDS.get(endpoint.rsplit(".", 1)[-1])
    if kind is None:
        return ""
    if model is not None and kind in ("Bearbeiten", "Details"):
        return f"{kind}: {model} – "
    return f"{kind}: "


@bp.get("/barrierefreiheit")
def statement():
    """The accessibility statement: public, so that anyone can report a barrier."""
    return render_template(
        "kim/accessibility.html", contact=current_app.config["KIM_ACCESSIBILITY_CONTACT"]
    )


def init_app(app: Flask) -> None:
    """Register the statement page and the layout's helpers."""
    app.config.setdefault("KIM_ACCESSIBILITY_CONTACT", "")
    app.register_blueprint(bp)
    app.add_template_global(form_errors, "kim_form_errors")
    app.add_template_global(page_kind, "kim_page_kind")
