"""The "Bericht" page: the evaluation report as an xlsx download."""

from __future__ import annotations

import tempfile

from flask import Response, current_app, request
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, RadioField, SelectField, SelectMultipleField, SubmitField, widgets
from wtforms.validators import DataRequired, ValidationError

from kim_admin import audit, exports, report
from kim_admin.extensions import db
from kim_admin.permissions import EXPORT, READ, apply_scope, is_scoped
from models import Municipality, ReportingPeriod

from .base import SecureView


class CheckboxListField(SelectMultipleField):
    """Several choices as a list of checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ReportForm(FlaskForm):
    """Range of quarters, municipalities and data basis of a report."""

    first = SelectField("Von Quartal", coerce=int, validators=[DataRequired("Bitte wählen.")])
    last = SelectField("Bis Quartal", coerce=int, validators=[DataRequired("Bitte wählen.")])
    municipalities = CheckboxListField(
        "Kommunen", coerce=int, validators=[DataRequired("Bitte mindestens eine Kommune wählen.")]
    )
    basis = RadioField(
        "Datenbasis",
        choices=[
            ("approved", "nur freigegebene Meldungen"),
            ("all", "alle erfassten Werte (auch Entwürfe und noch nicht freigegebene)"),
        ],
        default="approved",
    )
    publish = BooleanField("für Veröffentlichung: kleine Fallzahlen unterdrücken")
    submit = SubmitField("Bericht herunterladen")

    def validate_last(self, field):
        """The range runs forwards."""
        # The choices are in chronological order.
        order = {pid: n for n, (pid, _) in enumerate(self.first.choices or [])}
        first, last = order.get(self.first.data), order.get(field.data)
        if first is not None and last is not None and last < first:
            raise ValidationError("Das letzte Quartal darf nicht vor dem ersten liegen.")


class ReportView(SecureView):
    """Form and download of the evaluation report (xlsx)."""

    permission_resource = "report"
    view_permissions = {"index": {"GET": READ, "POST": EXPORT}}

    def _form(self) -> ReportForm:
        form = ReportForm()
        periods = db.session.scalars(
            select(ReportingPeriod).order_by(ReportingPeriod.year, ReportingPeriod.quarter)
        ).all()
        choices = [(p.id, str(p)) for p in periods]
        form.first.choices = choices
        form.last.choices = choices
        towns = db.session.scalars(
            apply_scope(
                select(Municipality).order_by(Municipality.name),
                Municipality,
                "municipality",
                current_user,
            )
        ).all()
        form.municipalities.choices = [
            (t.id, t.name + ("" if t.kim_participant else " (keine KIM-Teilnahme)")) for t in towns
        ]
        if request.method == "GET":
            defaults = report.default_options(current_user)
            form.first.data = defaults["first"]
            form.last.data = defaults["last"]
            form.municipalities.data = defaults["municipalities"]
        return form

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """Show the form; on a valid POST send the workbook."""
        form = self._form()
        status = 200
        if request.method == "POST":
            if form.validate_on_submit():
                options = report.ReportOptions(
                    form.first.data,
                    form.last.data,
                    tuple(form.municipalities.data),
                    approved_only=form.basis.data != "all",
                    publish=form.publish.data,
                    threshold=current_app.config["KIM_SUPPRESSION_THRESHOLD"],
                )
                try:
                    return self._download(options)
                except report.ReportError as exc:
                    form.first.errors = [*form.first.errors, str(exc)]
            status = 400
        return self.render("kim/report.html", form=form), status

    def _download(self, options: report.ReportOptions) -> Response:
        audit.record(
            "export",
            "report",
            municipality_id=current_user.municipality_id
            if is_scoped(current_user, "municipality")
            else None,
            new={
                "format": "xlsx",
                "first": options.first_period_id,
                "last": options.last_period_id,
                "municipalities": list(options.municipality_ids),
                "approved_only": options.approved_only,
                "publish": options.publish,
            },
        )
        handle = tempfile.TemporaryFile(suffix=".xlsx")
        data = report.build(options, current_user, handle)
        db.session.commit()
        size = exports.file_size(handle)
        handle.seek(0)
        response = Response(exports.iter_file(handle), mimetype=exports.XLSX_MIMETYPE)
        response.content_length = size
        name = report.filename(data.first, data.last)
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
