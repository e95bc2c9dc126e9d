"""The quarterly data-entry page and the Meldestand matrix.

Both pages only call :mod:`kim_admin.monitoring`: the view reads the request,
asks the package, and renders or redirects.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

from flask import abort, current_app, flash, redirect, request, send_file, url_for
from flask_admin import expose
from flask_login import current_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from kim_admin import audit
from kim_admin.extensions import db
from kim_admin.monitoring import entry, periods, status, template, workflow
from kim_admin.permissions import DISTRICT_ADMIN, EDIT, MUNICIPAL_STAFF, READ
from kim_admin.scope import reachable_municipalities
from models import ReportingPeriod

from .base import SecureView

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Seconds a dry run may be confirmed after it was shown.
IMPORT_MAX_AGE = 30 * 60

#: Review actions of the district and the municipality, and their success messages.
REVIEW_MESSAGES = {
    "approve": "Meldung freigegeben.",
    "return": "Meldung zurückgegeben.",
    "unapprove": "Freigabe aufgehoben; die Meldung ist wieder zur Prüfung eingereicht.",
    "unapprove_return": "Freigabe aufgehoben und an die Kommune zurückgegeben.",
    "withdraw": "Meldung zurückgezogen; Sie können die Zahlen wieder ändern.",
    "exception": "Ausnahme gewährt.",
    "revoke_exception": "Ausnahme aufgehoben.",
}


def _date_field(name: str) -> date | None:
    """A date from the form (ISO, as the browser's date input sends it), or None."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError as exc:
        raise workflow.TransitionError("Bitte ein gültiges Datum angeben.") from exc


#: Gaps listed one by one in the error summary; more are counted.
MAX_LISTED_GAPS = 20


@dataclass(frozen=True)
class Problem:
    """One line of the error summary: what is wrong and where (an anchor), if anywhere."""

    text: str
    href: str | None = None


@dataclass(frozen=True)
class Problems:
    """The error summary at the top of a failed save or submission."""

    heading: str
    items: list[Problem]


def _problems(
    errors: dict[str, str],
    check: entry.SubmitCheck | None,
    entry_cells: list[entry.Cell],
    reports: list[entry.RuleReport],
) -> Problems | None:
    """What stopped a save or a submission, each item linked to its field."""
    by_key = {c.key: c for c in entry_cells}
    if errors:
        items = [
            Problem(f"{by_key[key].title}: {text}", f"#value-{key}")
            for key, text in errors.items()
            if key in by_key
        ]
        if "_form" in errors:
            return Problems(errors["_form"], items)
        return Problems(
            "Bitte die markierten Eingaben korrigieren; es wurde nichts gespeichert.", items
        )
    if check is None:  # a submission that passed has redirected already
        return None
    items = [
        Problem(f"{c.title}: Wert oder Kommentar fehlt.", f"#value-{c.key}")
        for c in check.gaps[:MAX_LISTED_GAPS]
    ]
    if len(check.gaps) > MAX_LISTED_GAPS:
        items.append(Problem(f"… und {len(check.gaps) - MAX_LISTED_GAPS} weitere fehlende Werte."))
    for report in reports:
        if report.kind == "blocking":
            items.append(
                Problem(
                    f"{report.finding.rule_name}: blockierende Prüfregel verletzt.",
                    f"#{report.anchor}",
                )
            )
    if check.warnings:
        items.append(
            Problem(
                "Warnungen der Plausibilitätsprüfung: bitte im Kommentar der markierten "
                "Zellen erklären oder bestätigen.",
                "#acknowledge",
            )
        )
    return Problems(
        "Die Meldung wurde nicht eingereicht; Ihre Zahlen sind als Entwurf gespeichert.",
        items,
    )


class DataEntryView(SecureView):
    """One municipality × one quarter: every active indicator, saved as a draft,
    then submitted; the district approves, returns or un-approves it here."""

    permission_resource = "data_entry"
    view_permissions = {
        "index": {"GET": READ, "POST": EDIT},
        "history": READ,
        "template": READ,
        "upload": EDIT,
        "confirm": EDIT,
    }

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """Show the form for the chosen municipality and quarter; handle its buttons."""
        towns = reachable_municipalities(current_user)
        period_list = periods.newest_first()
        town = self._pick(towns, "municipality")
        period = self._pick(period_list, "period")
        if town is None or period is None:
            return self.render(
                "kim/entry.html",
                towns=towns,
                periods=period_list,
                town=town,
                period=period,
                cells=[],
            )

        typed: dict[str, entry.Posted] = {}
        errors: dict[str, str] = {}
        check = None
        if request.method == "POST":
            action = request.form.get("action", "save")
            if action not in ("save", "submit"):
                self._review(action, town, period)
                return redirect(self._here(town, period))
            typed = self._posted()
            result = entry.write_figures(town.id, period, typed, current_user)
            errors = result.errors
            if result.ok and action == "save":
                flash(f"Entwurf gespeichert ({result.saved} Werte geändert).", "success")
                return redirect(self._here(town, period))
            if result.ok:
                acknowledged = bool(request.form.get("acknowledge"))
                try:
                    check = entry.submit(town.id, period, current_user, acknowledged)
                except workflow.TransitionError as exc:
                    db.session.rollback()
                    flash(str(exc), "error")
                    return redirect(self._here(town, period))
                if not check.refused(acknowledged):
                    flash(
                        "Die Meldung wurde eingereicht "
                        f"(Status: {status.label(status.SUBMITTED)}).",
                        "success",
                    )
                    return redirect(self._here(town, period))
                typed = {}  # saved as a draft: the page shows the stored figures

        entry_cells = entry.cells(town.id, period)
        found = entry.findings(entry_cells)
        reports = entry.rule_reports(found, entry_cells)
        groups, rows = entry.matrix(entry_cells)
        submission = workflow.find_submission(town.id, period)
        current = submission.status if submission else None
        lock = workflow.lock_reason(current_user, town.id, period)
        is_district = current_user.role == DISTRICT_ADMIN
        editable = lock is None and self.allowed(EDIT)
        return self.render(
            "kim/entry.html",
            towns=towns,
            periods=period_list,
            town=town,
            period=period,
            cells=entry_cells,
            groups=groups,
            rows=rows,
            typed=typed,
            errors=errors,
            check=check,
            problems=_problems(errors, check, entry_cells, reports),
            reports=reports,
            marked=entry.marked_cells(reports),
            expected=entry.expected_values(entry_cells),
            # Warnings nobody explained yet: the one confirmation a submission needs.
            open_warnings=[r for r in reports if r.kind == "warning"],
            submission=submission,
            state=status.get(current),
            submitted_label=status.label(status.SUBMITTED),
            return_reason=submission.return_reason if current == status.RETURNED else None,
            lock=lock,
            editable=editable,
            can_submit=editable and current in status.EDITABLE,
            can_withdraw=current_user.role == MUNICIPAL_STAFF and current == status.SUBMITTED,
            can_review=is_district and current == status.SUBMITTED,
            can_unapprove=is_district and current == status.APPROVED,
            first_submitted=workflow.first_submitted(submission) if submission else None,
            on_time=workflow.on_time(submission),
            range_text=entry.range_text,
            edit_until=workflow.edit_deadline(period),
            is_district=is_district,
            min_due=max(date.today(), period.ends_on),
        )

    @expose("/verlauf")
    def history(self):
        """Who changed one figure when, from what (on demand from the entry page)."""
        town, period = self._chosen()
        key = request.args.get("cell", "")[:40]
        cell = next((c for c in entry.cells(town.id, period) if c.key == key), None)
        if cell is None:
            abort(404)
        changes = entry.history(cell.entry) if cell.entry else []
        return self.render(
            "kim/entry_history.html", town=town, period=period, cell=cell, changes=changes
        )

    @expose("/vorlage")
    def template(self):
        """Download the pre-filled Excel template of the chosen municipality and quarter."""
        town, period = self._chosen()
        name = f"KIM-Meldung_{town.ags}_{period.year}-Q{period.quarter}.xlsx"
        return send_file(
            io.BytesIO(template.build(town, period)),
            as_attachment=True,
            download_name=name,
            mimetype=XLSX,
        )

    @expose("/import", methods=("POST",))
    def upload(self):
        """Dry run of an uploaded template: what would change, cell by cell."""
        town, period = self._chosen()
        lock = workflow.lock_reason(current_user, town.id, period)
        upload = request.files.get("file")
        if lock:
            flash(lock, "error")
        elif upload is None or not upload.filename:
            flash("Bitte eine ausgefüllte Vorlage (.xlsx) auswählen.", "error")
        else:
            try:
                plan = template.dry_run(upload.stream, town, period)
            except template.TemplateError as exc:
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
            data = self._signer().loads(request.form.get("token", ""), max_age=IMPORT_MAX_AGE)
        except SignatureExpired:
            flash(
                "Der Probelauf ist älter als 30 Minuten; bitte die Datei erneut hochladen.",
                "error",
            )
            return redirect(url_for(".index"))
        except BadSignature:
            abort(400)
        town = next((t for t in reachable_municipalities(current_user) if t.id == data["m"]), None)
        period = db.session.get(ReportingPeriod, data["p"])
        if town is None or period is None or data["u"] != current_user.id:
            abort(404)
        posted = {
            key: entry.Posted(text, comment, version)
            for key, text, comment, version in data["cells"]
        }
        result = entry.write_figures(town.id, period, posted, current_user)
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
    def _signer() -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(current_app.secret_key, salt="kim-template-import")

    def _chosen(self):
        """(municipality, quarter) named by the query string; 404 unless the user reaches both."""
        town = self._pick(reachable_municipalities(current_user), "municipality")
        period = self._pick(periods.newest_first(), "period")
        if town is None or period is None:
            abort(404)
        return town, period

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
    def _posted() -> dict[str, entry.Posted]:
        posted = {}
        for name, text in request.form.items():
            if name.startswith("value-"):
                key = name[len("value-") :]
                posted[key] = entry.Posted(
                    text=text,
                    comment=request.form.get(f"comment-{key}", ""),
                    version=request.form.get(f"version-{key}", 0, type=int),
                )
        return posted

    def _review(self, action, town, period) -> None:
        """Approve, return, un-approve, withdraw or set an exception; the workflow
        checks role, status and dates."""
        if action not in REVIEW_MESSAGES:
            abort(400)
        submission = workflow.submission_for(town.id, period)
        reason = request.form.get("reason", "")[:2000]
        try:
            if action == "exception":
                until = _date_field("until")
                if until is None:
                    raise workflow.TransitionError("Bitte ein Datum angeben.")
                workflow.grant_exception(submission, until, current_user)
            elif action == "revoke_exception":
                workflow.revoke_exception(submission, current_user)
            else:
                workflow.transition(
                    submission, action, current_user, reason=reason, due=_date_field("due")
                )
        except workflow.TransitionError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return
        db.session.commit()
        flash(REVIEW_MESSAGES[action], "success")


#: Municipalities per page of the Meldestand matrix.
MELDESTAND_PAGE = 50


class MeldestandView(SecureView):
    """Municipality × quarter: status, punctuality and the reporting rate."""

    permission_resource = "meldestand"

    @expose("/")
    def index(self):
        """Render the matrix for a chosen range of quarters (default: the last eight)."""
        newest = periods.newest_first()
        by_id = {p.id: p for p in newest}
        last = by_id.get(request.args.get("bis", type=int)) or (newest[0] if newest else None)
        first = by_id.get(request.args.get("von", type=int))
        if last is not None and first is None:
            first = periods.recent(last, 8)[0]
        if first is not None and last is not None and periods.key(first) > periods.key(last):
            flash("Das erste Quartal liegt nach dem letzten; die Auswahl wurde getauscht.", "info")
            first, last = last, first
        shown = periods.between(first, last) if first and last else []
        towns = reachable_municipalities(current_user, participants_only=True)
        by_cell = workflow.submissions_by_cell([p.id for p in shown], [t.id for t in towns])
        # The rates count every municipality; the matrix shows one page of them.
        pages = max(1, -(-len(towns) // MELDESTAND_PAGE))
        page = min(max(request.args.get("seite", 1, type=int), 1), pages)
        return self.render(
            "kim/meldestand.html",
            all_periods=newest,
            first=first,
            last=last,
            periods=shown,
            towns=towns[(page - 1) * MELDESTAND_PAGE : page * MELDESTAND_PAGE],
            town_count=len(towns),
            page=page,
            pages=pages,
            # One URL pattern for every cell: url_for per cell costs more than the cell.
            entry_url=url_for("entry.index", municipality=0, period=0)
            .replace("municipality=0", "municipality={m}")
            .replace("period=0", "period={p}"),
            by_cell=by_cell,
            rates=workflow.rates(shown, towns, by_cell),
            on_time=workflow.on_time,
            first_submitted=workflow.first_submitted,
        )
