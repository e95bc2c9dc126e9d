"""Reporting periods, monitoring figures and submissions."""

from __future__ import annotations

from flask import url_for
from markupsafe import Markup
from sqlalchemy import select
from wtforms.validators import NumberRange, ValidationError

from kim_admin.extensions import db
from kim_admin.monitoring import rules
from models import RULE_OPERATORS, RULE_SEVERITIES, SUBMISSION_STATUSES, Indicator

from .base import SecureModelView


def _period_text(view, context, model, name):
    return str(model.period)


def _entry_link(view, context, model, name):
    """The quarter, linked to the data-entry page of the row's municipality and quarter."""
    url = url_for("entry.index", municipality=model.municipality_id, period=model.period_id)
    return Markup('<a href="{}" title="In der Dateneingabe öffnen">{}</a>').format(
        url, model.period
    )


class ReportingPeriodView(SecureModelView):
    """Quarters, open or closed, with their submission deadline."""

    column_list = ["year", "quarter", "is_open", "deadline"]
    column_default_sort = [("year", True), ("quarter", True)]
    column_filters = ["year", "quarter", "is_open"]
    column_labels = {
        "year": "Jahr",
        "quarter": "Quartal",
        "is_open": "Offen",
        "deadline": "Meldefrist",
    }
    column_formatters = {"quarter": lambda v, c, m, n: f"Q{m.quarter}"}
    column_formatters_export = column_formatters
    form_columns = ["year", "quarter", "is_open", "deadline"]
    form_choices = {"quarter": [("1", "Q1"), ("2", "Q2"), ("3", "Q3"), ("4", "Q4")]}
    form_args = {
        "year": {"validators": [NumberRange(2000, 2100, message="Jahr zwischen 2000 und 2100.")]},
        "quarter": {"coerce": int},
    }


class MonitoringEntryView(SecureModelView):
    """Every reported figure, one row each (entry happens on the data-entry form)."""

    column_list = [
        "municipality",
        "period",
        "indicator",
        "target_group",
        "value",
        "comment",
        "updated_at",
        "updated_by",
    ]
    column_default_sort = ("updated_at", True)
    column_searchable_list = ["comment"]
    column_filters = [
        "municipality.name",
        "period.year",
        "period.quarter",
        "indicator.code",
        "target_group.name",
    ]
    column_sortable_list = [
        ("municipality", "municipality.name"),
        ("indicator", "indicator.sort_order"),
        "value",
        "updated_at",
    ]
    column_labels = {
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "period": "Quartal",
        "period.year": "Jahr",
        "period.quarter": "Quartal (1–4)",
        "indicator": "Kennzahl",
        "indicator.code": "Kennzahl (Kürzel)",
        "target_group": "Zielgruppe",
        "target_group.name": "Zielgruppe",
        "value": "Wert",
        "comment": "Kommentar",
        "updated_at": "Geändert am",
        "updated_by": "Geändert von",
        "created_at": "Erfasst am",
        "created_by": "Erfasst von",
        "version": "Version",
    }
    column_descriptions = {
        "comment": "Nur zusammengefasste Angaben – keine personenbezogenen Daten!",
    }
    # Figures are not published from this list: a town's quarter next to the
    # published yearly report would give hidden cells away (see views.base).
    # One way to enter figures: the data-entry page (kim_admin.monitoring); the
    # permission table grants this list reading and export only. Each row links
    # to its quarter's entry page.
    column_formatters = {"period": _entry_link}
    column_formatters_export = {"period": _period_text}


class SubmissionView(SecureModelView):
    """The state of each municipality's quarterly report."""

    column_list = ["municipality", "period", "status", "submitted_at", "reviewed_at"]
    column_filters = ["municipality.name", "period.year", "period.quarter", "status"]
    column_sortable_list = [
        ("municipality", "municipality.name"),
        "status",
        "submitted_at",
        "reviewed_at",
    ]
    column_choices = {"status": SUBMISSION_STATUSES}
    column_labels = {
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "period": "Quartal",
        "period.year": "Jahr",
        "period.quarter": "Quartal (1–4)",
        "status": "Status",
        "submitted_at": "Gemeldet am",
        "submitted_by": "Gemeldet von",
        "reviewed_at": "Geprüft am",
        "reviewed_by": "Geprüft von",
        "return_reason": "Grund der Rückgabe",
        "exception_until": "Ausnahme: Bearbeitung bis",
    }
    column_descriptions = {
        "exception_until": "Die Kommune darf bis zu diesem Tag trotz Fristablauf ändern."
    }
    column_details_list = [
        "municipality",
        "period",
        "status",
        "submitted_at",
        "submitted_by",
        "reviewed_at",
        "reviewed_by",
        "return_reason",
        "exception_until",
    ]
    # The status, exceptions and due dates move only through the reporting
    # workflow on the data-entry page; this list reads and exports.
    column_formatters = {"period": _entry_link}
    column_formatters_export = {"period": _period_text}


def _valid_expression(form, field):
    """Form validator: the expression parses and names only known indicator codes."""
    if not field.data:
        return
    try:
        codes = rules.codes_in(field.data)
    except rules.RuleSyntaxError as exc:
        raise ValidationError(str(exc)) from exc
    known = set(db.session.scalars(select(Indicator.code)))
    unknown = sorted(codes - known)
    if unknown:
        raise ValidationError(f"Unbekannte Kennzahl: {', '.join(unknown)}")


class ValidationRuleView(SecureModelView):
    """Plausibility rules checked on every save and before a submission."""

    column_list = ["name", "left_side", "operator", "right_side", "severity", "active"]
    column_default_sort = "name"
    column_searchable_list = ["name", "message"]
    column_filters = ["severity", "active"]
    column_choices = {"operator": RULE_OPERATORS, "severity": RULE_SEVERITIES}
    column_labels = {
        "name": "Bezeichnung",
        "left_side": "Linke Seite",
        "operator": "Vergleich",
        "right_side": "Rechte Seite",
        "severity": "Art",
        "message": "Meldungstext",
        "active": "Aktiv",
    }
    column_descriptions = {
        "left_side": "Kennzahl-Kürzel, Zahlen, + − * / und prev(KÜRZEL) für das Vorquartal",
        "right_side": "z. B. prev(CM_AKT) + CM_NEU",
    }
    form_columns = ["name", "left_side", "operator", "right_side", "severity", "message", "active"]
    form_choices = {"operator": RULE_OPERATORS, "severity": RULE_SEVERITIES}
    form_args = {
        "left_side": {"validators": [_valid_expression]},
        "right_side": {"validators": [_valid_expression]},
    }
