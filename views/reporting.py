"""Reporting periods, monitoring figures and submissions."""

from __future__ import annotations

from typing import Any

from flask import g, url_for
from flask_admin.contrib.sqla import filters as sqla_filters
from markupsafe import Markup
from sqlalchemy import BigInteger, exists, func, literal, select, true, union_all
from sqlalchemy.sql.visitors import replacement_traverse
from wtforms.validators import NumberRange, ValidationError

from kim_admin.extensions import db
from kim_admin.monitoring import rules
from models import (
    RULE_OPERATORS,
    RULE_SEVERITIES,
    SUBMISSION_STATUSES,
    Indicator,
    MonitoringEntry,
    Municipality,
    ReportingPeriod,
)

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


#: Most rows :meth:`MonitoringEntryView.page_keys` merges (the page and the rows before
#: it, from each matching quarter); a deeper page is left to the database's own plan.
MERGED_ROWS = 50_000
#: From this many rows before the page, a list sorted by Kommune is found by counting
#: town by town (:func:`_town_walk`) instead of sorting every row before the page.
TOWN_WALK_FROM = 10_000


class _PeriodFilter:
    """A filter on a column of the quarter that narrows the figures by ``period_id``.

    The quarters matching the filter are looked up first (a small table), and the
    figures are then filtered on their own ``period_id``: no join, and the
    matching quarters are known, so a page sorted by date can be merged from one
    index scan per quarter (:meth:`MonitoringEntryView.page_keys`).
    """

    def __init__(self, period_column: Any, name: str) -> None:
        super().__init__(MonitoringEntry.period_id, name)  # type: ignore[call-arg]
        self.period_column = period_column

    def get_column(self, alias: Any) -> Any:
        return self.period_column

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        matching = super().apply(select(ReportingPeriod.id), value)  # type: ignore[misc]
        ids = set(db.session.scalars(matching))
        # Several filters on quarters: the figures must match all of them.
        known = g.get("kim_period_ids")
        g.kim_period_ids = ids if known is None else known & ids
        clause = MonitoringEntry.period_id.in_(sorted(ids))
        g.kim_period_clauses = [*g.get("kim_period_clauses", []), clause]
        return query.filter(clause)


def _period_filters(column: Any, name: str) -> list[Any]:
    """The operations Flask-Admin offers on an integer column, on a quarter's column."""
    kinds = (
        sqla_filters.IntEqualFilter,
        sqla_filters.IntNotEqualFilter,
        sqla_filters.IntGreaterFilter,
        sqla_filters.IntSmallerFilter,
        sqla_filters.IntInListFilter,
        sqla_filters.IntNotInListFilter,
    )
    return [
        type(f"Period{kind.__name__}", (_PeriodFilter, kind), {})(column, name) for kind in kinds
    ]


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
        *_period_filters(ReportingPeriod.year, "Jahr"),
        *_period_filters(ReportingPeriod.quarter, "Quartal (1–4)"),
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

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        g.pop("kim_period_ids", None)  # set again by this list's quarter filters
        g.pop("kim_period_clauses", None)
        return super().get_list(*args, **kwargs)

    def page_keys(
        self, query: Any, sort_column: Any, sort_desc: bool, offset: int, size: int
    ) -> Any:
        """With a filter on quarters and the page sorted by date: one index scan per quarter.

        A quarter's figures all carry that quarter's dates, so the database, walking
        the date index from the newest end and expecting a year's figures spread over
        it, reads every later figure before the first match (measured: 2.3 s at a
        million figures for "Jahr gleich"). Merged from the index on
        ``(period_id, updated_at, id)`` of each matching quarter, the page reads
        the page's rows and those before it, per quarter.
        """
        if sort_column == "municipality" and offset >= TOWN_WALK_FROM:
            return _town_walk(query, bool(sort_desc), offset, size)
        ids = g.get("kim_period_ids")
        if sort_column not in (None, "updated_at") or ids is None:
            return super().page_keys(query, sort_column, sort_desc, offset, size)
        if not ids:
            return []
        descending = sort_desc if sort_column is not None else True
        if (
            len(ids) == 1
            or len(ids) * (offset + size) > MERGED_ROWS
            or _walk_finds_early(ids, descending)
        ):
            return super().page_keys(query, sort_column, sort_desc, offset, size)

        def ordered(*columns: Any) -> list[Any]:
            return [c.desc() if descending else c.asc() for c in columns]

        # Each branch names its one quarter; the filter's list of quarters goes (it
        # would lead the database to the index on period_id alone, in no useful order).
        marked = g.get("kim_period_clauses", [])
        base = replacement_traverse(
            query.limit(None)
            .offset(None)
            .order_by(None)
            .with_entities(MonitoringEntry.id, MonitoringEntry.updated_at)
            .statement,
            {},
            lambda element: true() if any(element is c for c in marked) else None,
        )
        # Each quarter's first rows in the sort's order, read from its index (a
        # subquery each: the parts of a compound SELECT cannot be sorted), then the
        # page from all of them.
        branches = []
        for period_id in sorted(ids):
            part = (
                base.where(MonitoringEntry.period_id == period_id)
                .order_by(*ordered(MonitoringEntry.updated_at, MonitoringEntry.id))
                .limit(offset + size)
                .subquery()
            )
            branches.append(select(part.c.id, part.c.updated_at))
        merged = union_all(*branches).subquery()
        return db.session.execute(
            select(merged.c.id)
            .order_by(*ordered(merged.c.updated_at, merged.c.id))
            .limit(size)
            .offset(offset)
        )


def _town_walk(query: Any, descending: bool, offset: int, size: int) -> Any:
    """A deep page of the list sorted by Kommune: count town by town, then sort one or two.

    Sorted by (town name, id), the database sorts every row before the page by id
    within its town (measured: 77–171 ms at OFFSET 250,000 of a million figures). The
    page only needs to know which towns it falls in: walking the towns in name order
    (a recursive query, one index lookup per town), each town's rows under the list's
    scope, filters and search are counted from the index on ``municipality_id`` until
    the count passes the page. The page is then the list's own sorted query, limited
    to those towns and with the rows of the towns before them skipped.
    """
    keys = query.limit(None).offset(None).order_by(None).with_entities(MonitoringEntry.id)
    listed = keys.statement.with_only_columns(func.count(), maintain_column_froms=True)
    town = Municipality.__table__.alias("town")
    name = Municipality.__table__.c.name
    step = func.max if descending else func.min

    def rows_of(column: Any) -> Any:
        return listed.where(MonitoringEntry.municipality_id == column).scalar_subquery()

    def after(current: Any) -> Any:
        beyond = name < current if descending else name > current
        return select(step(name)).where(beyond).scalar_subquery()

    first = select(step(name)).scalar_subquery()
    walk = (
        select(
            town.c.id.label("id"),
            town.c.name.label("name"),
            literal(0, BigInteger).label("before"),
            rows_of(town.c.id).label("rows"),
        )
        .where(town.c.name == first)
        .cte("town_walk", recursive=True)
    )
    walk = walk.union_all(
        select(town.c.id, town.c.name, walk.c.before + walk.c.rows, rows_of(town.c.id))
        .select_from(walk.join(town, town.c.name == after(walk.c.name)))
        .where(walk.c.before + walk.c.rows < offset + size)
    )
    towns = db.session.execute(
        select(walk.c.id, walk.c.before)
        .where(walk.c.before + walk.c.rows > offset, walk.c.rows > 0)
        .order_by(walk.c.before)
    ).all()
    if not towns:
        return []
    return (
        query.limit(None)
        .offset(None)
        .filter(MonitoringEntry.municipality_id.in_([t.id for t in towns]))
        .with_entities(MonitoringEntry.id)
        .offset(offset - towns[0].before)
        .limit(size)
    )


def _walk_finds_early(ids: set[int], descending: bool) -> bool:
    """Whether the date index, walked from the end the sort starts at, meets a
    matching figure at once: when the newest (oldest) quarter is among ``ids``."""
    key = (ReportingPeriod.year, ReportingPeriod.quarter)
    end = db.session.scalar(
        select(ReportingPeriod.id)
        .where(exists().where(MonitoringEntry.period_id == ReportingPeriod.id))
        .order_by(*(c.desc() if descending else c.asc() for c in key))
        .limit(1)
    )
    return end in ids


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
