"""The quarterly data-entry page and the Meldestand matrix."""

from __future__ import annotations

import io
from datetime import date

from flask import abort, current_app, flash, redirect, request, send_file, url_for
from flask_admin import expose
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from kim_admin import audit, excel_template, monitoring, reporting
from kim_admin.extensions import db
from kim_admin.permissions import EDIT, READ, apply_scope
from models import Municipality, ReportingPeriod, Submission

from .base import SecureView

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _periods() -> list[ReportingPeriod]:
    return db.session.scalars(
        select(ReportingPeriod).order_by(
            ReportingPeriod.year.desc(), ReportingPeriod.quarter.desc()
        )
    ).all()


def _municipalities() -> list[Municipality]:
    """The municipalities the user may pick (a municipal user: only their own)."""
    query = select(Municipality).order_by(Municipality.name)
    return db.session.scalars(apply_scope(query, Municipality, "municipality", current_user)).all()


class DataEntryView(SecureView):
    """One municipality × one quarter: every active indicator, saved as a draft,
    then submitted; the district approves or returns it here."""

    permission_resource = "data_entry"
    view_permissions = {
        "index": {"GET": READ, "POST": EDIT},
        "template": READ,
        "upload": EDIT,
        "confirm": EDIT,
    }

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """Show the form for the chosen municipality and quarter; handle its buttons."""
        towns = _municipalities()
        periods = _periods()
        town = self._pick(towns, "municipality")
        period = self._pick(periods, "period")
        if town is None or period is None:
            return self.render(
                "kim/entry.html", towns=towns, periods=periods, town=town, period=period, cells=[]
            )

        typed: dict[str, monitoring.Posted] = {}
        errors: dict[str, str] = {}
        check = None
        if request.method == "POST":
            action = request.form.get("action", "save")
            typed = self._posted()
            if action in ("save", "submit"):
                reason = reporting.lock_reason(current_user, town.id, period)
                if reason:
                    flash(reason, "error")
                else:
                    result = monitoring.save_draft(town.id, period, typed, current_user)
                    errors = result.errors
                    if result.ok and action == "save":
                        flash(f"Entwurf gespeichert ({result.saved} Werte geändert).", "success")
                        return redirect(self._here(town, period))
                    if result.ok:
                        try:
                            check = monitoring.submit(
                                town.id,
                                period,
                                current_user,
                                acknowledged=bool(request.form.get("acknowledge")),
                            )
                        except reporting.TransitionError as exc:
                            db.session.rollback()
                            flash(str(exc), "error")
                            return redirect(self._here(town, period))
                        if not check.refused(bool(request.form.get("acknowledge"))):
                            flash("Die Meldung wurde abgeschlossen.", "success")
                            return redirect(self._here(town, period))
                        flash(
                            "Die Meldung ist noch nicht vollständig oder plausibel; "
                            "Ihre Zahlen sind als Entwurf gespeichert.",
                            "error",
                        )
                        typed = {}
                    else:
                        flash(
                            "Bitte die markierten Eingaben korrigieren; es wurde nichts "
                            "gespeichert.",
                            "error",
                        )
            else:
                self._review(action, town, period)
                return redirect(self._here(town, period))

        entry_cells = monitoring.cells(town.id, period)
        submission = db.session.scalar(
            select(Submission).where(
                Submission.municipality_id == town.id, Submission.period_id == period.id
            )
        )
        lock = reporting.lock_reason(current_user, town.id, period)
        return self.render(
            "kim/entry.html",
            towns=towns,
            periods=periods,
            town=town,
            period=period,
            cells=entry_cells,
            typed=typed,
            errors=errors,
            check=check,
            submission=submission,
            status_label=reporting.STATUS_LABELS[submission.status if submission else None],
            lock=lock,
            editable=lock is None and self.allowed(EDIT),
            can_submit=(submission.status if submission else None) in reporting.EDITABLE_STATUSES,
            current_findings=monitoring.findings(entry_cells),
            range_text=monitoring.range_text,
            edit_until=reporting.edit_deadline(period),
            is_district=current_user.role == "district_admin",
        )

    @expose("/vorlage")
    def template(self):
        """Download the pre-filled Excel template of the chosen municipality and quarter."""
        town = self._pick(_municipalities(), "municipality")
        period = self._pick(_periods(), "period")
        if town is None or period is None:
            abort(404)
        name = f"KIM-Meldung_{town.ags}_{period.year}-Q{period.quarter}.xlsx"
        return send_file(
            io.BytesIO(excel_template.build(town, period)),
            as_attachment=True,
            download_name=name,
            mimetype=XLSX,
        )

    @expose("/import", methods=("POST",))
    def upload(self):
        """Dry run of an uploaded template: what would change, cell by cell."""
        town = self._pick(_municipalities(), "municipality")
        period = self._pick(_periods(), "period")
        if town is None or period is None:
            abort(404)
        lock = reporting.lock_reason(current_user, town.id, period)
        upload = request.files.get("file")
        if lock:
            flash(lock, "error")
        elif upload is None or not upload.filename:
            flash("Bitte eine ausgefüllte Vorlage (.xlsx) auswählen.", "error")
        else:
            try:
                plan = excel_template.dry_run(upload.stream, town, period)
            except excel_template.TemplateError as exc:
                flash(str(exc), "error")
            else:
                changes = [p for p in plan if p.status in ("neu", "geändert")]
                token = self._signer().dumps(
                    {
                        "m": town.id,
                        "p": period.id,
                        "u": current_user.id,
                        "cells": [[p.key, p.text, p.comment, p.version] for p in changes],
                    }
                )
                return self.render(
                    "kim/import.html",
                    town=town,
                    period=period,
                    plan=plan,
                    changes=changes,
                    token=token,
                    errors=[p for p in plan if p.status == "Fehler"],
                )
        return redirect(self._here(town, period))

    @expose("/import/bestaetigen", methods=("POST",))
    def confirm(self):
        """Write a confirmed dry run in one transaction, under the form's rules."""
        try:
            data = self._signer().loads(request.form.get("token", ""))
        except BadSignature:
            abort(400)
        town = next((t for t in _municipalities() if t.id == data["m"]), None)
        period = db.session.get(ReportingPeriod, data["p"])
        if town is None or period is None or data["u"] != current_user.id:
            abort(404)
        lock = reporting.lock_reason(current_user, town.id, period)
        if lock:
            flash(lock, "error")
            return redirect(self._here(town, period))
        posted = {
            key: monitoring.Posted(text, comment, version)
            for key, text, comment, version in data["cells"]
        }
        result = monitoring.save_draft(town.id, period, posted, current_user)
        if result.ok:
            audit.record(
                "import",
                "monitoring_entry",
                None,
                town.id,
                new={"period": str(period), "cells": result.saved},
            )
            db.session.commit()
            flash(f"Import abgeschlossen: {result.saved} Werte gespeichert (Entwurf).", "success")
        else:
            flash(
                "Der Import wurde nicht ausgeführt: "
                + "; ".join(sorted(set(result.errors.values())))[:500],
                "error",
            )
        return redirect(self._here(town, period))

    @staticmethod
    def _signer() -> URLSafeSerializer:
        return URLSafeSerializer(current_app.secret_key, salt="kim-template-import")

    def _pick(self, rows, name):
        """The row named by the query string, among those the user may reach."""
        raw = request.values.get(name, type=int)
        if raw is None:
            if name == "municipality":  # a municipal user has exactly one
                return rows[0] if len(rows) == 1 else None
            return next((p for p in rows if p.is_open), rows[0] if rows else None)
        for row in rows:
            if row.id == raw:
                return row
        abort(404)  # another municipality's form does not exist for this user

    @staticmethod
    def _here(town, period):
        return url_for(".index", municipality=town.id, period=period.id)

    @staticmethod
    def _posted() -> dict[str, monitoring.Posted]:
        posted = {}
        for name, text in request.form.items():
            if name.startswith("value-"):
                key = name[len("value-") :]
                posted[key] = monitoring.Posted(
                    text=text,
                    comment=request.form.get(f"comment-{key}", ""),
                    version=request.form.get(f"version-{key}", 0, type=int),
                )
        return posted

    def _review(self, action, town, period) -> None:
        """Approve, return or reopen; the state machine checks role and status."""
        submission = reporting.submission_for(town.id, period)
        try:
            if action in ("approve", "return"):
                reporting.transition(
                    submission, action, current_user, reason=request.form.get("reason")
                )
            elif action == "exception":
                until = date.fromisoformat(request.form.get("until", ""))
                reporting.grant_exception(submission, until, current_user)
            else:
                abort(400)
        except reporting.TransitionError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return
        except ValueError:
            db.session.rollback()
            flash("Bitte ein gültiges Datum angeben.", "error")
            return
        db.session.commit()
        flash(
            {
                "approve": "Meldung freigegeben.",
                "return": "Meldung zurückgegeben.",
                "exception": "Ausnahme gewährt.",
            }[action],
            "success",
        )


class MeldestandView(SecureView):
    """Municipality × quarter: status, punctuality and the reporting rate."""

    permission_resource = "meldestand"

    @expose("/")
    def index(self):
        """Render the matrix for the last eight quarters (two queries)."""
        periods = list(reversed(_periods()[:8]))
        towns = db.session.scalars(
            select(Municipality)
            .where(Municipality.kim_participant.is_(True))
            .order_by(Municipality.name)
        ).all()
        subs = db.session.scalars(
            select(Submission).where(Submission.period_id.in_([p.id for p in periods]))
        ).all()
        by_cell = {(s.municipality_id, s.period_id): s for s in subs}
        rates = {}
        for p in periods:
            cells = [by_cell.get((t.id, p.id)) for t in towns]
            received = [s for s in cells if s and s.status in ("submitted", "approved")]
            punctual = [s for s in received if reporting.on_time(s)]
            expected = len(towns) or 1
            rates[p.id] = (len(received) / expected, len(punctual) / expected)
        return self.render(
            "kim/meldestand.html",
            periods=periods,
            towns=towns,
            by_cell=by_cell,
            rates=rates,
            labels=reporting.STATUS_LABELS,
            on_time=reporting.on_time,
        )
