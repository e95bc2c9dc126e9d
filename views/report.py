"""The "Bericht" page: the evaluation report, made by a background job.

A valid POST records a job (:mod:`kim_admin.jobs`) and answers at once, with the
job's addresses as JSON for the page's script (202) or, without script, with a
redirect to the job's own page (303), which reloads itself until the file is
ready. No report work happens in the request: not even the disclosure audit of
a published report, which at NRW scale takes seconds.
"""

from __future__ import annotations

from flask import Response, abort, current_app, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, RadioField, SelectField, SelectMultipleField, SubmitField, widgets
from wtforms.validators import DataRequired, StopValidation, ValidationError

from kim_admin import audit, exports, jobs, report, scope
from kim_admin.extensions import db
from kim_admin.monitoring import periods
from kim_admin.permissions import EXPORT, READ, can, is_scoped
from kim_admin.report import job as report_job
from kim_admin.report import publication
from models import ReportingPeriod

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
    # Off by default: one row per figure is most of a large report's size and time.
    raw = BooleanField("mit Rohdaten (jeder Wert eine Zeile; große Datei)")
    submit = SubmitField("Bericht erstellen")

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

    def validate_publish(self, field):
        """A published report covers one calendar year (checked here, before any job)."""
        if not field.data or self.first.errors or self.last.errors:
            return
        bounds = {
            p.id: p
            for p in db.session.scalars(
                select(ReportingPeriod).where(
                    ReportingPeriod.id.in_([self.first.data, self.last.data])
                )
            )
        }
        first, last = bounds.get(self.first.data), bounds.get(self.last.data)
        if (
            first is not None
            and last is not None
            and (refusal := publication.check_grid(first, last))
        ):
            raise ValidationError(refusal)
        refusal = publication.check_choice(
            self.municipalities.data or [], self.basis.data != "all", self.user
        )
        if refusal:
            raise ValidationError(refusal)


class ReportView(SecureView):
    """Form of the evaluation report; its jobs' progress and files."""

    permission_resource = "report"
    view_permissions = {
        "index": {"GET": READ, "POST": EXPORT},
        # A job is an export: only who may export sees one (and only their own).
        "job_page": EXPORT,
        "job_status": EXPORT,
        "job_file": EXPORT,
    }

    def _form(self) -> ReportForm:
        form = ReportForm(current_user)
        choices = [(p.id, str(p)) for p in reversed(periods.newest_first())]
        form.first.choices = choices
        form.last.choices = choices
        form.municipalities.choices = [
            (t.id, t.name + ("" if t.kim_participant else " (keine KIM-Teilnahme)"))
            for t in scope.reachable_municipalities(current_user)
        ]
        # The page's script switches to the last whole calendar year when "für
        # Veröffentlichung" is ticked (and back): published reports cover one.
        year = report.last_complete_year()
        # ... and every KIM municipality with approved figures only.
        form.publish.render_kw = {
            "data-published-first": year[0].id if year else "",
            "data-published-last": year[-1].id if year else "",
            "data-published-towns": ",".join(map(str, publication.participant_ids())),
        }
        if request.method == "GET":
            defaults = report.default_options(current_user)
            form.first.data = defaults["first"]
            form.last.data = defaults["last"]
            form.municipalities.data = defaults["municipalities"]
        return form

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """Show the form; on a valid POST start the report's job and answer at once."""
        form = self._form()
        status = 200
        job_error = ""
        if request.method == "POST":
            if form.validate_on_submit():
                options = report.ReportOptions(
                    form.first.data,
                    form.last.data,
                    tuple(form.municipalities.data),
                    approved_only=form.basis.data != "all",
                    include_raw=form.raw.data,
                    publish=form.publish.data,
                    threshold=current_app.config["KIM_SUPPRESSION_THRESHOLD"],
                    width=current_app.config.get("KIM_SUPPRESSION_WIDTH"),
                )
                try:
                    job = jobs.submit("report", report_job.parameters(options), current_user)
                except jobs.JobError as exc:
                    job_error = str(exc)
                else:
                    self._record(options, job.id)
                    return self._started(job)
            status = 400
        return self.render("kim/report.html", form=form, job_error=job_error), status

    def _record(self, options: report.ReportOptions, job_id: str) -> None:
        """The export goes into the audit trail when it is asked for."""
        audit.record(
            "export",
            "report",
            object_id=job_id,
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
                "raw": options.include_raw,
            },
        )
        db.session.commit()

    def _job_urls(self, job_id: str) -> dict[str, str]:
        return {
            "page": url_for(".job_page", job_id=job_id),
            "status": url_for(".job_status", job_id=job_id),
            "file": url_for(".job_file", job_id=job_id),
        }

    def _started(self, job) -> Response:
        """202 with the job's addresses for the script; a redirect to its page without."""
        urls = self._job_urls(job.id)
        if request.headers.get("X-Requested-With") == "fetch":
            response = jsonify({"id": job.id, **urls})
            response.status_code = 202
            response.headers["Location"] = urls["page"]
            return response
        return redirect(urls["page"], code=303)

    def _job(self, job_id: str):
        """The current user's own report or list-export job, or 404 (anyone else's is
        "not there"); an export only while the user may still export that list."""
        job = jobs.get_for(job_id, current_user)
        if job is None or job.kind not in ("report", "export"):
            abort(404)
        if job.kind == "export" and not can(current_user, job.parameters["resource"], EXPORT):
            abort(404)
        return job

    @expose("/auftrag/<job_id>/")
    def job_page(self, job_id: str):
        """A job's state as a page (without script it reloads itself until done)."""
        job = self._job(job_id)
        state = jobs.status(job)
        return self.render("kim/report_job.html", job=state, urls=self._job_urls(job.id))

    @expose("/auftrag/<job_id>/status")
    def job_status(self, job_id: str):
        """A job's state as JSON, for the page's progress bar."""
        job = self._job(job_id)
        state = jobs.status(job)
        if state["status"] == jobs.DONE:
            state["file"] = self._job_urls(job.id)["file"]
        return jsonify(state)

    @expose("/auftrag/<job_id>/datei")
    def job_file(self, job_id: str):
        """The finished workbook (404 until it is there)."""
        job = self._job(job_id)
        if job.status != jobs.DONE:
            abort(404)
        content = jobs.result_file(job)
        csv = job.filename.endswith(".csv")
        response = Response(
            content, mimetype=exports.CSV_MIMETYPE if csv else exports.XLSX_MIMETYPE
        )
        response.headers["Content-Disposition"] = f'attachment; filename="{job.filename}"'
        return response
