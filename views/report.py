"""The "Bericht" page: the evaluation report as an xlsx download."""

from __future__ import annotations

import tempfile

from flask import Response, current_app, request
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectField, SelectMultipleField, SubmitField, widgets
from wtforms.validators import DataRequired, StopValidation, ValidationError

from kim_admin import audit, exports, report, scope
from kim_admin.extensions import db
from kim_admin.monitoring import periods
from kim_admin.permissions import EXPORT, READ, is_scoped

from .base import SecureView

UNKNOWN_QUARTER = "Bitte ein Quartal aus der Liste wählen."
# Said alike for an unknown id and another municipality's: a municipality outside
# the user's scope is treated as if it did not exist.
UNKNOWN_TOWN = "Unbekannte Kommune: Bitte nur Kommunen aus der Liste wählen."


class QuarterField(SelectField):
    """A quarter from the list; anything else is refused in German (not WTForms' English)."""

    def __init__(self, label: str, **kwargs) -> None:
        kwargs.setdefault("validators", [DataRequired("Bitte wählen.")])
        super().__init__(label, coerce=int, validate_choice=False, **kwargs)

    def process_formdata(self, valuelist):
        """Read the id; text that is not a number gets the German message."""
        if valuelist:
            try:
                self.data = int(valuelist[0])
            except ValueError as exc:
                self.data = None
                raise ValueError(UNKNOWN_QUARTER) from exc

    def pre_validate(self, form):
        """Only a quarter of the list."""
        if self.process_errors:
            raise StopValidation()  # keeps the German message; "Bitte wählen." would drop it
        if self.data is not None and self.data not in {value for value, _ in self.choices}:
            raise ValidationError(UNKNOWN_QUARTER)


class CheckboxListField(SelectMultipleField):
    """Several municipalities as a list of checkboxes, checked by ``kim_admin.scope``."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()

    def process_formdata(self, valuelist):
        """Read the ids; text that is not a number gets the German message."""
        self.data = [int(value) for value in valuelist if value.strip().isdigit()]
        if len(self.data) < len(valuelist):
            raise ValueError(UNKNOWN_TOWN)

    def pre_validate(self, form):
        """Stop at an id that is not a number, keeping its German message."""
        if self.process_errors:
            raise StopValidation()


class ReportForm(FlaskForm):
    """Range of quarters, municipalities and data basis of a report, for ``user``."""

    first = QuarterField("Von Quartal")
    last = QuarterField("Bis Quartal")
    municipalities = CheckboxListField(
        "Kommunen",
        coerce=int,
        # Checked against the user's scope in validate_municipalities, in German.
        validate_choice=False,
        validators=[DataRequired("Bitte mindestens eine Kommune wählen.")],
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

    def __init__(self, user, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def validate_last(self, field):
        """The range runs forwards."""
        # The choices are in chronological order.
        order = {pid: n for n, (pid, _) in enumerate(self.first.choices or [])}
        first, last = order.get(self.first.data), order.get(field.data)
        if first is not None and last is not None and last < first:
            raise ValidationError("Das letzte Quartal darf nicht vor dem ersten liegen.")

    def validate_municipalities(self, field):
        """Only municipalities the user may reach (unknown and foreign ids alike refused)."""
        _, foreign = scope.reachable_municipality_ids(self.user, field.data or [])
        if foreign:
            raise ValidationError(UNKNOWN_TOWN)


class ReportView(SecureView):
    """Form and download of the evaluation report (xlsx)."""

    permission_resource = "report"
    view_permissions = {"index": {"GET": READ, "POST": EXPORT}}

    def _form(self) -> ReportForm:
        form = ReportForm(current_user)
        choices = [(p.id, str(p)) for p in reversed(periods.newest_first())]
        form.first.choices = choices
        form.last.choices = choices
        form.municipalities.choices = [
            (t.id, t.name + ("" if t.kim_participant else " (keine KIM-Teilnahme)"))
            for t in scope.reachable_municipalities(current_user)
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
