"""Handlungsfeld 4, the steering group's workspace: meetings, decisions, measures,
structural problems (and their overview across towns)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import SelectField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from kim_admin import scope
from kim_admin.extensions import db
from kim_admin.permissions import CREATE, EDIT, EXPORT, READ, in_scope, is_scoped
from kim_admin.report import publication
from kim_admin.steering import document, workspace
from models import (
    MEASURE_STATUSES,
    PROBLEM_CATEGORIES,
    PROBLEM_FREQUENCIES,
    REPORT_SECTIONS,
    SECTION_MAX,
    ReportDocument,
)

from .base import SecureModelView, SecureView, record_export
from .report import UNKNOWN_TOWN, CheckboxListField

#: Shown to a municipal user for a post they may not see (Kreis level or another town),
#: naming neither.
OTHER_POST = "eine Stelle außerhalb der eigenen Kommune"


def _own_towns(towns: list[Any]) -> list[Any]:
    """The towns of a list the current user may see (a municipal user: only their own)."""
    return [t for t in towns if in_scope(t, "municipality", current_user)]


def _towns(view, context, model, name) -> str:
    return ", ".join(str(t) for t in _own_towns(getattr(model, name)))


def _responsible(view, context, model, name) -> str:
    """The post or partner in charge, without naming another town's post."""
    if model.responsible_partner is not None:
        return str(model.responsible_partner)
    post = model.responsible_post
    if post is None:
        return ""
    return str(post) if in_scope(post, "post", current_user) else OTHER_POST


def _gap(view, context, model, name) -> str:
    """The coverage cell a measure addresses (municipality – target group)."""
    town = model.gap_municipality
    if town is None or not in_scope(town, "municipality", current_user):
        return ""
    return f"{town} – {model.gap_target_group}"


def _problems(view, context, model, name) -> str:
    return "; ".join(
        str(p) for p in model.problems if in_scope(p, "structural_problem", current_user)
    )


def _decision(view, context, model, name) -> str:
    # The steering group's internal minutes are not the towns' business.
    if model.decision is None or is_scoped(current_user, "measure"):
        return ""
    return str(model.decision)


def _multiline(view, context, model, name) -> Markup:
    """Text typed with line breaks, shown with them (escaped)."""
    text = getattr(model, name) or ""
    return Markup("<br>").join(escape(line) for line in text.splitlines())


class MeetingView(SecureModelView):
    """Sitzungen: date, place, participants, agenda and minutes (text only)."""

    column_list = ["held_on", "place", "municipalities", "partners", "posts", "decisions"]
    column_details_list = [
        "held_on",
        "place",
        "municipalities",
        "partners",
        "posts",
        "agenda",
        "minutes",
        "decisions",
    ]
    column_default_sort = ("held_on", True)
    column_searchable_list = ["place", "agenda", "minutes"]
    column_filters = ["held_on", "municipalities.name", "partners.name"]
    column_labels = {
        "held_on": "Datum",
        "place": "Ort",
        "municipalities": "Kommunen",
        "municipalities.name": "Kommune",
        "partners": "Kooperationspartner",
        "partners.name": "Kooperationspartner",
        "posts": "Stellen",
        "agenda": "Tagesordnung",
        "minutes": "Protokoll",
        "decisions": "Beschlüsse",
    }
    column_descriptions = {"minutes": "Nur Text, keine personenbezogenen Daten von Klienten."}
    column_formatters_detail = {"agenda": _multiline, "minutes": _multiline}
    form_columns = ["held_on", "place", "municipalities", "partners", "posts", "agenda", "minutes"]


class DecisionView(SecureModelView):
    """Beschlüsse einer Sitzung."""

    column_list = ["meeting", "title"]
    column_details_list = ["meeting", "title", "text"]
    column_default_sort = ("meeting.held_on", True)
    column_searchable_list = ["title", "text"]
    column_sortable_list = [("meeting", "meeting.held_on"), "title"]
    column_labels = {"meeting": "Sitzung", "title": "Beschluss", "text": "Wortlaut"}
    column_formatters_detail = {"text": _multiline}
    form_columns = ["meeting", "title", "text"]


class MeasureView(SecureModelView):
    """Maßnahmen: who, where, for whom, by when, status, and the gap they close.

    A municipal user reads the measures naming their town (scoped through the
    measure's municipalities); the formatters show them no other town's name.
    """

    column_list = [
        "title",
        "status",
        "due_on",
        "responsible",
        "municipalities",
        "target_groups",
        "gap",
    ]
    column_details_list = [
        "title",
        "description",
        "status",
        "due_on",
        "responsible",
        "municipalities",
        "target_groups",
        "gap",
        "problems",
        "decision",
    ]
    column_default_sort = [("due_on", False), ("title", False)]
    column_searchable_list = ["title", "description"]
    column_filters = ["status", "due_on", "municipalities.name", "target_groups.name"]
    column_sortable_list = ["title", "status", "due_on"]
    column_choices = {"status": MEASURE_STATUSES}
    column_labels = {
        "title": "Maßnahme",
        "description": "Beschreibung",
        "status": "Status",
        "due_on": "Fällig am",
        "responsible": "Verantwortlich",
        "responsible_post": "Verantwortliche Stelle",
        "responsible_partner": "Verantwortlicher Partner",
        "municipalities": "Betroffene Kommunen",
        "municipalities.name": "Kommune",
        "target_groups": "Zielgruppen",
        "target_groups.name": "Zielgruppe",
        "gap": "Versorgungslücke",
        "gap_municipality": "Versorgungslücke: Kommune",
        "gap_target_group": "Versorgungslücke: Zielgruppe",
        "problems": "Strukturelle Probleme",
        "decision": "Beschluss",
    }
    column_descriptions = {
        "responsible_post": "Eine Stelle oder ein Partner, nicht beides",
        "gap_municipality": "Feld der Versorgungsmatrix (Kommune und Zielgruppe), optional",
        "municipalities": "Kommunen, die die Maßnahme betrifft (sie sehen die Maßnahme)",
    }
    column_formatters = {
        "responsible": _responsible,
        "municipalities": _towns,
        "gap": _gap,
        "problems": _problems,
        "decision": _decision,
    }
    column_formatters_detail = {**column_formatters, "description": _multiline}
    column_formatters_export = {
        "responsible": lambda v, c, m, n: str(m.responsible or ""),
        "gap": lambda v, c, m, n: (
            f"{m.gap_municipality} – {m.gap_target_group}" if m.gap_municipality else ""
        ),
    }
    form_columns = [
        "title",
        "description",
        "status",
        "due_on",
        "responsible_post",
        "responsible_partner",
        "municipalities",
        "target_groups",
        "gap_municipality",
        "gap_target_group",
        "problems",
        "decision",
    ]
    form_choices = {"status": MEASURE_STATUSES}

    def on_model_change(self, form, model, is_created):
        """One responsible; a whole matrix cell or none; the gap's town is concerned."""
        if model.responsible_post is not None and model.responsible_partner is not None:
            raise ValidationError("Bitte entweder eine Stelle oder einen Partner angeben.")
        if (model.gap_municipality is None) != (model.gap_target_group is None):
            raise ValidationError(
                "Für eine Versorgungslücke bitte Kommune und Zielgruppe angeben (oder keins)."
            )
        if model.gap_municipality is not None and model.gap_municipality not in (
            model.municipalities
        ):
            model.municipalities.append(model.gap_municipality)
        super().on_model_change(form, model, is_created)


class StructuralProblemView(SecureModelView):
    """Strukturelle Probleme: what case managers meet again and again, per town and quarter."""

    column_list = ["period", "municipality", "category", "target_group", "frequency", "description"]
    column_default_sort = [("period.year", True), ("period.quarter", True)]
    column_searchable_list = ["description"]
    column_filters = ["category", "frequency", "municipality.name", "target_group.name"]
    column_sortable_list = [
        ("period", ("period.year", "period.quarter")),
        ("municipality", "municipality.name"),
        "category",
        "frequency",
    ]
    column_choices = {"category": PROBLEM_CATEGORIES, "frequency": PROBLEM_FREQUENCIES}
    column_labels = {
        "period": "Quartal",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "category": "Bereich",
        "target_group": "Zielgruppe",
        "target_group.name": "Zielgruppe",
        "frequency": "Wie oft",
        "description": "Beschreibung",
    }
    column_descriptions = {
        "target_group": "Leer = alle Zielgruppen",
        "description": "z. B. „keine Kinderbetreuung während der Sprachkurse“. "
        "Keine personenbezogenen Daten!",
    }
    column_formatters_detail = {"description": _multiline}
    form_columns = [
        "municipality",
        "period",
        "category",
        "target_group",
        "frequency",
        "description",
    ]
    form_choices = {"category": PROBLEM_CATEGORIES, "frequency": PROBLEM_FREQUENCIES}


class ProblemOverviewView(SecureView):
    """Strukturelle Probleme across towns and quarters, with the measures linked to them."""

    permission_resource = "problem_overview"
    view_permissions = {"index": READ}

    @expose("/")
    def index(self):
        years = workspace.problem_years()
        year = request.args.get("year", type=int)
        if year not in years:
            year = None
        return self.render(
            "steering/problems.html",
            groups=workspace.problem_overview(current_user, year),
            years=years,
            year=year,
        )


class ReportDocumentForm(FlaskForm):
    """Year, municipalities and narrative of the report for politics."""

    year = SelectField("Berichtsjahr", coerce=int, validate_choice=False)
    municipalities = CheckboxListField(
        "Kommunen",
        coerce=int,
        validate_choice=False,  # checked against the user's scope below, in German
        validators=[DataRequired("Bitte mindestens eine Kommune wählen.")],
    )
    einleitung = TextAreaField("Einleitung")
    entwicklung = TextAreaField("Entwicklung je Handlungsfeld")
    massnahmen = TextAreaField("Maßnahmen")
    ausblick = TextAreaField("Ausblick")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for code, _ in REPORT_SECTIONS:
            self[code].validators = [
                Length(max=SECTION_MAX, message=f"Höchstens {SECTION_MAX} Zeichen.")
            ]

    def validate_year(self, field):
        if field.data not in {value for value, _ in self.year.choices or []}:
            raise ValidationError("Bitte ein Jahr aus der Liste wählen.")

    def validate_municipalities(self, field):
        _, foreign = scope.reachable_municipality_ids(current_user, field.data or [])
        if foreign:
            raise ValidationError(UNKNOWN_TOWN)
        # The PDF shows the published figures: every KIM municipality, as the workbook.
        if refusal := publication.check_choice(field.data or [], True, current_user):
            raise ValidationError(refusal)

    def texts(self) -> dict[str, str]:
        return {code: self[code].data or "" for code, _ in REPORT_SECTIONS}

    def options(self) -> document.DocumentOptions:
        return document.DocumentOptions(self.year.data, tuple(self.municipalities.data))


class ReportDocumentView(SecureView):
    """Evaluationsbericht (PDF): the narrative with a preview, the PDF and its versions."""

    permission_resource = "report_pdf"
    view_permissions = {
        "index": {"GET": READ, "POST": EDIT},
        "preview": EDIT,
        "generate": CREATE,
        "download": EXPORT,
    }

    def _form(self) -> ReportDocumentForm:
        form = ReportDocumentForm()
        form.year.choices = [(y, str(y)) for y in document.years()]
        form.municipalities.choices = [
            (t.id, t.name + ("" if t.kim_participant else " (keine KIM-Teilnahme)"))
            for t in scope.reachable_municipalities(current_user)
        ]
        if request.method == "GET":
            texts = document.current_texts()
            for code, _ in REPORT_SECTIONS:
                form[code].data = texts[code]
            form.year.data = form.year.choices[0][0] if form.year.choices else None
            form.municipalities.data = [
                t.id for t in scope.reachable_municipalities(current_user, participants_only=True)
            ]
        return form

    def _page(self, form: ReportDocumentForm, status: int = 200, preview: str | None = None):
        return (
            self.render(
                "steering/report_document.html",
                form=form,
                preview=preview,
                versions=document.versions(),
                can_generate=self.allowed(CREATE),
                can_download=self.allowed(EXPORT),
            ),
            status,
        )

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """The form; a POST saves the narrative."""
        form = self._form()
        if request.method == "POST":
            if not form.validate_on_submit():
                return self._page(form, 400)
            document.save_texts(form.texts(), current_user)
            db.session.commit()
            flash("Die Texte wurden gespeichert.", "success")
            return redirect(url_for(".index"))
        return self._page(form)

    @expose("/vorschau", methods=("POST",))
    def preview(self):
        """The report as HTML with the texts as typed (nothing is saved)."""
        form = self._form()
        if not form.validate_on_submit():
            return self._page(form, 400)
        try:
            ctx = document.context(form.options(), form.texts(), current_user)
        except document.DocumentError as exc:
            form.year.errors = [*form.year.errors, str(exc)]
            return self._page(form, 400)
        # Rendered by Jinja with autoescaping: every typed text in it is escaped.
        body = Markup(render_template("steering/document_body.html", **ctx))  # noqa: S704
        return self._page(form, preview=body)

    @expose("/erzeugen", methods=("POST",))
    def generate(self):
        """Save the texts, render the PDF, store it as the next version."""
        form = self._form()
        if not form.validate_on_submit():
            return self._page(form, 400)
        try:
            stored = document.generate(form.options(), form.texts(), current_user)
        except document.DocumentError as exc:
            db.session.rollback()
            form.year.errors = [*form.year.errors, str(exc)]
            return self._page(form, 400)
        db.session.commit()
        flash(f"{stored} des Berichts wurde erzeugt und gespeichert.", "success")
        return redirect(url_for(".index"))

    @expose("/version/<int:document_id>.pdf")
    def download(self, document_id: int):
        """A stored PDF, byte for byte as it was generated."""
        stored = db.session.get(ReportDocument, document_id)
        if stored is None:
            abort(404)
        record_export("report_pdf", "pdf", version=stored.version, sha256=stored.sha256)
        stored = db.session.get(ReportDocument, document_id)  # the commit expired it
        response = Response(stored.pdf, mimetype="application/pdf")
        response.headers["Content-Disposition"] = f'attachment; filename="{stored.filename}"'
        return response
