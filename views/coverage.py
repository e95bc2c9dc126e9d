"""Handlungsfelder 1 and 3: the needs assessment and the coverage matrix."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import IntegerField, SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from kim_admin import coverage, exports, report
from kim_admin.extensions import db
from kim_admin.permissions import EXPORT, READ, is_scoped
from kim_admin.scope import reachable_municipalities
from kim_admin.steering.workspace import open_measures_by_cell
from models import PRIORITIES, TargetGroup

from .base import SecureModelView, SecureView, record_export


class NeedsAssessmentView(SecureModelView):
    """Bedarfserhebung: estimated need per municipality, target group and year."""

    column_list = [
        "year",
        "municipality",
        "target_group",
        "estimated_people",
        "priority",
        "responsible_post",
        "responsible_partner",
    ]
    column_default_sort = [("year", True), ("municipality.name", False)]
    column_searchable_list = ["notes"]
    column_filters = ["year", "municipality.name", "target_group.name", "priority"]
    column_sortable_list = [
        "year",
        ("municipality", "municipality.name"),
        ("target_group", "target_group.sort_order"),
        "estimated_people",
        "priority",
    ]
    column_choices = {"priority": PRIORITIES}
    column_labels = {
        "year": "Jahr",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "target_group": "Zielgruppe",
        "target_group.name": "Zielgruppe",
        "estimated_people": "Geschätzte Personen",
        "priority": "Priorität",
        "responsible_post": "Zuständige Stelle",
        "responsible_partner": "Zuständiger Partner",
        "notes": "Anmerkungen",
        "updated_at": "Geändert am",
    }
    column_descriptions = {
        "estimated_people": "Schätzung: wie viele Menschen der Zielgruppe Unterstützung brauchen",
        "responsible_post": "Eine Stelle oder ein Partner, nicht beides",
        "notes": "Keine personenbezogenen Daten!",
    }
    # The need of a town and target group is a cell of the year's published report
    # (its Versorgung sheet): published as that report shows it.
    column_published = {"estimated_people": lambda m: (m.year, need_key(m))}
    form_columns = [
        "municipality",
        "target_group",
        "year",
        "estimated_people",
        "priority",
        "responsible_post",
        "responsible_partner",
        "notes",
    ]
    form_choices = {"priority": PRIORITIES}
    form_args = {
        "year": {
            "validators": [NumberRange(2000, 2100, message="Jahr zwischen 2000 und 2100.")],
            "default": date.today().year,
        },
        "estimated_people": {
            "validators": [Optional(), NumberRange(min=0, message="Nicht negativ.")]
        },
    }

    def on_model_change(self, form, model, is_created):
        """A post or a partner is responsible, not both (mirrors the database check)."""
        if model.responsible_post is not None and model.responsible_partner is not None:
            raise ValidationError("Bitte entweder eine Stelle oder einen Partner angeben.")
        super().on_model_change(form, model, is_created)


class CoverageFilter(FlaskForm):
    """Filters of the coverage matrix (a GET form)."""

    class Meta:
        csrf = False  # reading only; the filters travel in the URL

    year = IntegerField(
        "Jahr", validators=[NumberRange(2000, 2100, "Jahr zwischen 2000 und 2100.")]
    )
    municipality = SelectField("Kommune", coerce=int)
    group = SelectField("Zielgruppe", coerce=int)
    flag = SelectField(
        "Anzeigen",
        choices=[
            ("", "alle Felder"),
            ("need", "nur mit Bedarf"),
            ("gap", "nur Lücken"),
            ("parallel", "nur Parallelstrukturen"),
        ],
    )


#: Rows of the coverage matrix per page (396 municipalities × 11 groups would be 4,356).
COVERAGE_PAGE = 110


class CoverageView(SecureView):
    """Versorgungsmatrix: municipality × target group, with gaps and parallel structures."""

    permission_resource = "coverage"
    view_permissions = {"index": READ, "export": EXPORT}

    def _filters(self) -> tuple[CoverageFilter, list[coverage.CoverageRow]]:
        form = CoverageFilter(request.args)
        towns = reachable_municipalities(current_user)
        groups = db.session.scalars(
            select(TargetGroup)
            .where(TargetGroup.active.is_(True))
            .order_by(TargetGroup.sort_order, TargetGroup.name)
        ).all()
        form.municipality.choices = [(0, "alle Kommunen")] + [(t.id, t.name) for t in towns]
        form.group.choices = [(0, "alle Zielgruppen")] + [(g.id, g.name) for g in groups]
        if not request.args.get("year"):
            form.year.data = coverage.default_year()
        if not request.args.get("municipality"):
            form.municipality.data = 0
        if not request.args.get("group"):
            form.group.data = 0
        if not request.args.get("flag"):
            form.flag.data = ""
        if not form.validate():
            form.year.data = coverage.default_year()
        rows = coverage.matrix(
            form.year.data,
            current_user,
            [form.municipality.data] if form.municipality.data else None,
            [form.group.data] if form.group.data else None,
        )
        flag = form.flag.data
        if flag == "need":
            rows = [r for r in rows if r.need]
        elif flag == "gap":
            rows = [r for r in rows if r.gap]
        elif flag == "parallel":
            rows = [r for r in rows if r.parallel]
        return form, rows

    @expose("/")
    def index(self):
        """The matrix with its filters, one page of rows at a time (the export has all)."""
        form, rows = self._filters()
        pages = max(1, -(-len(rows) // COVERAGE_PAGE))
        page = min(max(request.args.get("seite", 1, type=int), 1), pages)
        args = {k: v for k, v in request.args.items() if k not in ("publish", "seite")}
        return self.render(
            "kim/coverage.html",
            form=form,
            rows=rows[(page - 1) * COVERAGE_PAGE : page * COVERAGE_PAGE],
            row_count=len(rows),
            page=page,
            pages=pages,
            gaps=sum(1 for r in rows if r.gap),
            parallels=sum(1 for r in rows if r.parallel),
            args=args,
            can_publish=not is_scoped(current_user, "municipality"),
            # Open measures of the steering group on their cells (Handlungsfeld 4).
            measures=open_measures_by_cell(
                current_user,
                [
                    (r.municipality.id, r.group.id)
                    for r in rows[(page - 1) * COVERAGE_PAGE : page * COVERAGE_PAGE]
                ],
            ),
        )

    @expose("/export/<export_type>/")
    def export(self, export_type: str):
        """The matrix as shown, as xlsx or CSV."""
        if export_type not in ("xlsx", "csv"):
            abort(404)
        # Recorded and committed before reading: a commit expires what was read.
        record_export("coverage", export_type)
        form, rows = self._filters()
        columns = coverage.columns()
        published = request.args.get("publish") == "1"
        if published:
            if is_scoped(current_user, "municipality"):
                flash(
                    "Veröffentlicht wird nur der Bericht über alle KIM-Kommunen: Bitte wenden "
                    "Sie sich an die Kreisverwaltung oder die Steuerungsgruppe.",
                    "error",
                )
                return redirect(url_for(".index", **_without_publish()))
            publication = report.published_year(form.year.data, current_user)
            if publication is None:
                flash(
                    f"{form.year.data} ist noch nicht abgeschlossen: Veröffentlicht werden nur "
                    "ganze, abgelaufene Kalenderjahre.",
                    "error",
                )
                return redirect(url_for(".index", **_without_publish()))
            columns[2].get = lambda row: publication.published(
                ("N", row.municipality.id, row.group.id), row.need
            )
        table = exports.Table("Versorgung", columns, rows)
        suffix = "_Veroeffentlichung" if published else ""
        name = f"Versorgungsmatrix_{form.year.data}{suffix}.{export_type}"
        return exports.download(table, export_type, name)


def need_key(need: Any) -> tuple:
    """The key of a need assessment's cell in the published report."""
    return ("N", need.municipality_id, need.target_group_id)


def _without_publish() -> dict[str, str]:
    """The page's filters, for going back to it."""
    return {k: v for k, v in request.args.items() if k != "publish"}
