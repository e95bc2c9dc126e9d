"""Handlungsfelder 1 and 3: the needs assessment and the coverage matrix."""

from __future__ import annotations

from datetime import date

from flask import abort, current_app, request
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import IntegerField, SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from kim_admin import coverage, exports, suppression
from kim_admin.extensions import db
from kim_admin.permissions import EXPORT, READ
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
    column_published_counts = frozenset({"estimated_people"})
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
        """The matrix with its filters."""
        form, rows = self._filters()
        return self.render(
            "kim/coverage.html",
            form=form,
            rows=rows,
            gaps=sum(1 for r in rows if r.gap),
            parallels=sum(1 for r in rows if r.parallel),
            # Open measures of the steering group on their cells (Handlungsfeld 4).
            measures=open_measures_by_cell(
                current_user, [(r.municipality.id, r.group.id) for r in rows]
            ),
            args={k: v for k, v in request.args.items() if k != "publish"},
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
            columns[2].get = published_need(current_app.config["KIM_SUPPRESSION_THRESHOLD"])
        table = exports.Table("Versorgung", columns, rows)
        suffix = "_Veroeffentlichung" if published else ""
        name = f"Versorgungsmatrix_{form.year.data}{suffix}.{export_type}"
        return exports.download(table, export_type, name)


def published_need(threshold: int):
    """The need column of a published export: small estimates as "."."""

    def need(row: coverage.CoverageRow) -> object:
        if suppression.hidden_in_list(row.need, threshold):
            return suppression.SUPPRESSED
        return row.need

    return need
