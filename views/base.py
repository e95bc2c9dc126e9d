"""The secure base of every admin view: access rules, municipal scope, German UI.

Every Flask-Admin view of the application derives from :class:`SecureModelView`
or :class:`SecureView`. They ask :mod:`kim_admin.permissions` on every request
(through Flask-Admin's public hooks) and refuse whatever is not granted there.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import (
    abort,
    flash,
    has_request_context,
    redirect,
    request,
    url_for,
)
from flask_admin import BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_admin.contrib.sqla.fields import QuerySelectField, QuerySelectMultipleField
from flask_admin.contrib.sqla.filters import FilterEmpty
from flask_admin.contrib.sqla.form import AdminModelConverter
from flask_admin.model.form import converts
from flask_login import current_user
from sqlalchemy import func, literal_column
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Query, joinedload, selectinload
from werkzeug.utils import secure_filename
from wtforms import fields
from wtforms.validators import DataRequired, Length, NumberRange, ValidationError

from kim_admin import audit, exports, jobs, report, suppression
from kim_admin.extensions import db
from kim_admin.formatting import de_date, de_datetime, de_number
from kim_admin.permissions import (
    CREATE,
    DELETE,
    EDIT,
    EXPORT,
    READ,
    apply_scope,
    can,
    in_scope,
    is_scoped,
)
from models import User

from .fields import GermanDecimalField

log = logging.getLogger(__name__)

# Flask-Admin view functions and the permission each one needs. A view function
# not listed here (or in a subclass' ``view_permissions``) is refused.
VIEW_PERMISSIONS: dict[str, str | tuple[str, ...] | dict[str, str]] = {
    "index": READ,
    "index_view": READ,
    "details_view": READ,
    "create_view": CREATE,
    "edit_view": EDIT,
    "delete_view": DELETE,
    "export": EXPORT,
    "ajax_update": EDIT,
    # Lookups only serve the relation pickers of create and edit forms.
    "ajax_lookup": (CREATE, EDIT),
}

# Bulk actions and the permission each needs; others must be declared by the view.
ACTION_PERMISSIONS: dict[str, str] = {"delete": DELETE}


def integrity_message(exc: Exception) -> str:
    """A German explanation of a database error, without any SQL text."""
    text = str(getattr(exc, "orig", exc)).lower()
    if "unique" in text or "duplicate" in text:
        return "Ein Datensatz mit diesen Angaben existiert bereits."
    if "foreign key" in text or "foreign_key" in text:
        return (
            "Der Datensatz wird noch von anderen Daten verwendet oder verweist auf "
            "einen nicht vorhandenen Datensatz."
        )
    if "check" in text:
        return "Eine Angabe liegt außerhalb des erlaubten Bereichs."
    if "not null" in text or "null value" in text:
        return "Eine Pflichtangabe fehlt."
    return "Die Daten konnten nicht gespeichert werden."


# Flask-Admin calls these as formatter(view, value, column_name).
TYPE_FORMATTERS = {
    bool: lambda view, value, name: "ja" if value else "nein",
    date: lambda view, value, name: de_date(value),
    datetime: lambda view, value, name: de_datetime(value),
    Decimal: lambda view, value, name: de_number(value),
    type(None): lambda view, value, name: "",
    list: lambda view, value, name: ", ".join(str(v) for v in value),
}


def record_export(resource: str, export_type: str, **details: Any) -> None:
    """Write an export of ``resource`` to the audit trail (committed before any row is read)."""
    audit.record(
        "export",
        resource,
        municipality_id=current_user.municipality_id
        if is_scoped(current_user, "municipality")
        else None,
        new={
            "format": export_type,
            "filter": request.query_string.decode()[:500],
            **details,
        },
    )
    db.session.commit()


def scope_relation_fields(form: Any) -> Any:
    """Limit every relation picker of ``form`` to the rows the user may reach.

    A municipal user's municipality select offers their own municipality only,
    a room or post select only their own rooms or posts; a crafted POST naming
    anything else fails validation as "not a valid choice" and changes nothing.
    """
    for field in form:
        if not isinstance(field, QuerySelectField | QuerySelectMultipleField):
            continue
        query = field.query if field.query is not None else field.query_factory()
        model = query.column_descriptions[0]["entity"]
        field.query = apply_scope(query, model, model.__tablename__, current_user)
    return form


class ScopedAjaxLoader(QueryAjaxModelLoader):
    """An ajax lookup (``/ajax/lookup/``) that only finds rows the user may reach.

    Flask-Admin's loaders query the whole table; every ``form_ajax_refs`` entry
    of this application is one of these (see :func:`scoped_lookup`).
    """

    def get_query(self) -> Any:
        resource = self.model.__tablename__
        return apply_scope(super().get_query(), self.model, resource, current_user)

    def get_one(self, pk: Any) -> Any:
        obj = super().get_one(pk)
        if obj is not None and not in_scope(obj, self.model.__tablename__, current_user):
            return None  # a crafted POST naming a foreign row is "not a valid choice"
        return obj


def scoped_lookup(name: str, model: Any, fields: list[str], **options: Any) -> ScopedAjaxLoader:
    """A ``form_ajax_refs`` entry for ``name`` searching ``fields`` of ``model``."""
    options.setdefault("placeholder", "Bitte tippen, um zu suchen …")
    return ScopedAjaxLoader(name, db, model, fields=fields, **options)


def blank_first(form: Any) -> Any:
    """Required selects start empty and say "bitte auswählen".

    Flask-Admin offers no blank entry for a required relation, so the browser
    preselects the first row and a forgotten choice silently saves it.
    """
    for field in form:
        if type(field) is QuerySelectField and not field.allow_blank:
            field.allow_blank = True
            field.blank_text = "– bitte auswählen –"
            field.validators = [*field.validators, DataRequired("Bitte auswählen.")]
    return form


#: Columns read of a related row that a list shows (its ``__str__`` needs no more).
#: A list of figures names the user who changed each one; it never loads the user's
#: password hash or session token into the page's process.
RELATION_COLUMNS: dict[type, tuple[str, ...]] = {User: ("id", "name", "email")}


class CappedCount(int):
    """A row count that stopped at the cap: "mehr als 10.000" on the page.

    An ``int`` for Flask-Admin's pager (the pages up to the cap are offered), its
    text for the template that prints the count beside the list's tab.
    """

    def __str__(self) -> str:
        return f"mehr als {de_number(self - 1)}"

    __html__ = __str__


class CappedCountQuery(Query):
    """A list's count query that counts at most ``cap`` rows.

    Flask-Admin adds the filters and search to it as to any query and then asks
    :meth:`scalar`; counting a million figures on every page view costs a scan,
    counting up to the cap costs at most the cap's rows.
    """

    cap: int | None = None

    def scalar(self) -> Any:
        if not self.cap:
            return super().scalar()
        rows = self.with_entities(literal_column("1")).limit(self.cap + 1).subquery()
        count = self.session.query(func.count()).select_from(rows).scalar()
        return CappedCount(count) if count > self.cap else count


#: Longest text a form field of a ``Text`` column takes (descriptions, notes, minutes).
TEXT_MAX = 10_000


def _column_range(low: Any, high: Any) -> NumberRange:
    return NumberRange(
        low, high, message=f"Erlaubt sind Werte von {de_number(low)} bis {de_number(high)}."
    )


class KimModelConverter(AdminModelConverter):
    """Form fields with German input: native date pickers, decimal commas."""

    @converts("Date")
    def convert_date(self, field_args: dict[str, Any], **extra: Any) -> fields.DateField:
        # The browser's own date input shows 31.12.2025 in a German browser and
        # is keyboard-accessible; it submits ISO dates.
        return fields.DateField(**field_args)

    @converts("Numeric")
    def handle_decimal_types(
        self, column: Any, field_args: dict[str, Any], **extra: Any
    ) -> GermanDecimalField:
        field_args.setdefault("places", None)
        # No value the column cannot hold, on SQLite (which would store it) as on
        # PostgreSQL (which would refuse the whole save): Numeric(12, 2) ends at
        # 9,999,999,999.99.
        precision, scale = column.type.precision, column.type.scale
        if precision is not None:
            largest = Decimal(10) ** (precision - (scale or 0)) - Decimal(1).scaleb(-(scale or 0))
            field_args["validators"].append(_column_range(-largest, largest))
        return GermanDecimalField(**field_args)

    @converts("Text", "LargeBinary", "Binary", "CIText")
    def conv_Text(self, field_args: dict[str, Any], **extra: Any) -> fields.TextAreaField:
        # Text columns have no length of their own; a form field still gets one.
        field_args["validators"].append(
            Length(max=TEXT_MAX, message=f"Höchstens {TEXT_MAX} Zeichen.")
        )
        return super().conv_Text(field_args, **extra)

    @converts("Integer")
    def handle_integer_types(
        self, column: Any, field_args: dict[str, Any], **extra: Any
    ) -> fields.IntegerField:
        # PostgreSQL's integer holds ±2,147,483,647; SQLite would store more.
        field_args["validators"].append(_column_range(-(2**31), 2**31 - 1))
        return super().handle_integer_types(column, field_args, **extra)


def _always_joined(item: Any) -> bool:
    """Whether every row has a partner through relation ``item`` (NOT NULL foreign key)."""
    prop = getattr(item, "property", None)
    if prop is None or prop.uselist or not hasattr(prop, "local_columns"):
        return False
    return all(not column.nullable for column in prop.local_columns)


class AccessMixin:
    """Grants each request by the permission table; refuses everything else."""

    #: Name of the resource in the permission table (defaults to the endpoint).
    permission_resource: str | None = None
    #: Extra view functions of a subclass and the permission each needs.
    view_permissions: dict[str, str | tuple[str, ...] | dict[str, str]] = {}
    #: Extra bulk actions of a subclass and the permission each needs.
    action_permissions: dict[str, str] = {}

    endpoint: str

    @property
    def resource(self) -> str:
        return self.permission_resource or self.endpoint

    def allowed(self, action: str) -> bool:
        """Whether the current user may perform ``action`` on this view's resource."""
        return can(current_user, self.resource, action)

    def _required(self) -> str | tuple[str, ...] | None:
        blueprint, _, view_name = (request.endpoint or "").rpartition(".")
        if blueprint != self.endpoint:
            # Asked while rendering another page (the menu): may the user see it?
            return READ
        if view_name == "action_view":
            return {**ACTION_PERMISSIONS, **self.action_permissions}.get(
                request.form.get("action", "")
            )
        required = {**VIEW_PERMISSIONS, **self.view_permissions}.get(view_name)
        if isinstance(required, dict):  # per HTTP method, e.g. {"GET": READ, "POST": EDIT}
            required = required.get(request.method)
        return required

    def is_accessible(self) -> bool:
        required = self._required()
        if required is None:
            return False
        if isinstance(required, tuple):
            return any(self.allowed(action) for action in required)
        return self.allowed(required)

    def is_visible(self) -> bool:
        return self.allowed(READ)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403)


class SecureView(AccessMixin, BaseView):
    """A custom (non-model) admin page under the same access rules."""


class SecureModelView(AccessMixin, ModelView):
    """A model view: permissions from the table, rows scoped by municipality."""

    model_form_converter = KimModelConverter
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_export = TYPE_FORMATTERS
    column_type_formatters_detail = TYPE_FORMATTERS
    column_display_pk = False
    can_set_page_size = True
    page_size = 50
    details_modal = False
    edit_modal = False
    create_modal = False
    # Streamed by kim_admin.exports (Flask-Admin's tablib export loads every row).
    export_types = ["xlsx", "csv"]
    #: Excel number formats of exported columns, e.g. ``{"fte": "#,##0.00"}``.
    column_export_formats: dict[str, str] = {}
    #: Rows fetched per round trip from the server-side cursor of an export.
    export_batch_size = 2000
    #: Columns a published export ("für Veröffentlichung") takes from the audited
    #: publication of a calendar year: name -> ``locate(model) -> (year, cell key)``
    #: (see :mod:`kim_admin.report.publication` for the keys). Lists without any
    #: are working files and are not published.
    column_published: dict[str, Any] = {}
    #: A list counts its rows up to here and then says "mehr als 10.000".
    count_cap = 10_000

    def __init__(self, model: Any, **kwargs: Any) -> None:
        kwargs.setdefault("endpoint", model.__tablename__)
        super().__init__(model, db, **kwargs)

    # What the user may do, read per request so the templates hide what is refused.
    # Outside a request (while Flask-Admin builds its forms and column caches at
    # start-up) everything counts as possible, so that every cache gets built.
    def _can(self, action: str) -> bool:
        return not has_request_context() or self.allowed(action)

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return self._can(CREATE)

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self._can(EDIT)

    @property
    def can_delete(self) -> bool:  # type: ignore[override]
        return self._can(DELETE)

    @property
    def can_export(self) -> bool:  # type: ignore[override]
        return self._can(EXPORT)

    @property
    def can_view_details(self) -> bool:  # type: ignore[override]
        return self._can(READ)

    def is_action_allowed(self, name: str) -> bool:
        permission = {**ACTION_PERMISSIONS, **self.action_permissions}.get(name)
        return permission is not None and self.allowed(permission)

    # --- loading ---------------------------------------------------------------
    # A list page costs the same few queries at any size: a capped count, the page's
    # keys (filtered, sorted and paged through indexes), and the page's rows with
    # their single relations joined and their collections loaded in one more query.
    def scaffold_auto_joins(self) -> list[Any]:
        """No joined loads in the list query itself; :meth:`with_loaders` adds them.

        The keys of a page are found without loading any relation (a deep page
        then skips index entries, not joined rows), and a joined load of a
        collection would multiply the rows and could not be streamed from a
        server-side cursor (``yield_per``), which the exports need.
        """
        joins = super().scaffold_auto_joins()
        self._auto_collections = [j for j in joins if j.property.uselist]
        self._auto_singles = [j for j in joins if not j.property.uselist]
        return []

    def with_loaders(self, query: Any) -> Any:
        """``query`` with the relations the list shows: single ones joined (only the
        columns :data:`RELATION_COLUMNS` names for sensitive models), collections
        loaded in one query per relation."""
        for relation in getattr(self, "_auto_singles", ()):
            option = joinedload(relation)
            columns = RELATION_COLUMNS.get(relation.property.mapper.class_)
            if columns:
                target = relation.property.mapper.class_
                option = option.load_only(*(getattr(target, c) for c in columns))
            query = query.options(option)
        for collection in getattr(self, "_auto_collections", ()):
            query = query.options(selectinload(collection))
        return query

    def scaffold_filters(self, name: Any) -> Any:
        """Flask-Admin's filters, without "leer" where it cannot mean anything.

        A NOT NULL column reached through NOT NULL keys is never empty: the filter
        could only scan the whole table to find nothing. A NOT NULL column behind a
        nullable key (the target group of a figure) is empty exactly when the key
        is, which an index on the key answers without a join.
        """
        filters = super().scaffold_filters(name)
        if not filters:
            return filters
        kept = []
        for flt in filters:
            column = getattr(flt, "column", None)
            if not isinstance(flt, FilterEmpty) or getattr(column, "nullable", True):
                kept.append(flt)
                continue
            path = self._filter_joins.get(flt.key_name or column, [])
            if all(_always_joined(item) for item in path):
                continue
            if len(path) == 1 and len(path[0].property.local_columns) == 1:
                (key,) = path[0].property.local_columns
                kept.append(FilterEmpty(key, flt.name))
            else:
                kept.append(flt)
        return kept

    def _apply_path_joins(
        self, query: Any, joins: dict, path: Any, inner_join: bool = True
    ) -> tuple[Any, dict, Any]:
        """Join sorts and filters through inner joins where that changes no row.

        Flask-Admin joins related tables for sorting and filtering with LEFT OUTER
        JOIN, which fixes the join order: the database must read every row before it
        can sort them. A relation whose foreign key is NOT NULL has a partner for
        every row, so an inner join returns the same rows and lets an index on the
        related table's sort column drive the query.
        """
        if not inner_join and path and all(_always_joined(item) for item in path):
            inner_join = True
        return super()._apply_path_joins(query, joins, path, inner_join=inner_join)

    def _apply_sorting(
        self, query: Any, joins: dict, sort_column: Any, sort_desc: bool
    ) -> tuple[Any, dict]:
        """The chosen sort, then the primary key: equal values keep one order, so
        no row appears on two pages (or on none)."""
        query, joins = super()._apply_sorting(query, joins, sort_column, sort_desc)
        key = self.model.__mapper__.primary_key[0]
        descending = sort_desc if sort_column is not None else self._default_descending()
        return query.order_by(key.desc() if descending else key.asc()), joins

    def _default_descending(self) -> bool:
        order = self.column_default_sort
        if isinstance(order, list) and order:
            order = order[-1]
        return bool(isinstance(order, tuple) and order[1])

    def get_list(
        self,
        page: int | None,
        sort_column: Any,
        sort_desc: bool,
        search: str | None,
        filters: Any,
        execute: bool = True,
        page_size: int | None = None,
    ) -> tuple[int | None, Any]:
        """Find the page's keys first, then load those rows (a deferred join).

        Skipping 250,000 rows of a deep page then walks an index of keys, not joined
        rows with every column; the second query loads 50 rows by primary key.
        """
        count, query = super().get_list(
            page, sort_column, sort_desc, search, filters, execute=False, page_size=page_size
        )
        if not execute:
            return count, self.with_loaders(query)
        key = self.model.__mapper__.primary_key[0]
        size = page_size or self.page_size
        found = self.page_keys(query, sort_column, sort_desc, (page or 0) * size, size)
        # A filter through a collection can name a row twice; the page shows it once.
        keys = list(dict.fromkeys(row[0] for row in found))
        if not keys:
            return count, []
        rows = {
            getattr(row, key.key): row
            for row in self.with_loaders(self.get_query()).filter(key.in_(keys))
        }
        return count, [rows[k] for k in keys if k in rows]

    def page_keys(
        self, query: Any, sort_column: Any, sort_desc: bool, offset: int, size: int
    ) -> Any:
        """Rows of one column, the primary keys of the page ``query`` selects (sorted,
        filtered and paginated). A view may find them another way (see
        :class:`views.reporting.MonitoringEntryView`)."""
        return query.with_entities(self.model.__mapper__.primary_key[0])

    # --- municipal scope -------------------------------------------------------
    def get_query(self) -> Any:
        return apply_scope(super().get_query(), self.model, self.resource, current_user)

    def get_count_query(self) -> Any:
        query = CappedCountQuery([func.count("*")], session=db.session()).select_from(self.model)
        query.cap = self.count_cap
        return apply_scope(query, self.model, self.resource, current_user)

    def get_one(self, id: Any) -> Any:
        obj = super().get_one(id)
        if obj is not None and not in_scope(obj, self.resource, current_user):
            return None
        return obj

    def create_form(self, obj: Any = None) -> Any:
        return blank_first(scope_relation_fields(super().create_form(obj)))

    def edit_form(self, obj: Any = None) -> Any:
        return blank_first(scope_relation_fields(super().edit_form(obj)))

    def on_model_change(self, form: Any, model: Any, is_created: bool) -> None:
        if is_scoped(current_user, self.resource):
            # The municipality of a municipal user's row comes from the user, never the form.
            model.municipality_id = current_user.municipality_id

    # --- exports ---------------------------------------------------------------
    @expose("/export/<export_type>/")
    def export(self, export_type: str) -> Any:
        """The list as shown (filters, search, sort, scope), streamed as xlsx or CSV."""
        if export_type not in self.export_types:
            abort(404)
        if request.args.get("publish") == "1" and (refusal := self.publish_refusal()):
            flash(refusal, "error")
            return redirect(self.get_url(".index_view"))
        record_export(self.resource, export_type)
        if (started := jobs.export_in_background(self, export_type)) is not None:
            return started  # a large export runs as a job (kim_admin.jobs)
        return exports.download(self.export_table(), export_type, self.get_export_name(export_type))

    def get_export_name(self, export_type: str = "csv") -> str:
        """``Kennzahlwerte_2026-11-24.xlsx``: the list's German name and today's date."""
        name = secure_filename(self.name.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue"))
        published = "_Veroeffentlichung" if request.args.get("publish") == "1" else ""
        return f"{name or 'Export'}_{date.today().isoformat()}{published}.{export_type}"

    def export_query(self) -> Any:
        """The list page's query (scope, filters, search, sort), without paging."""
        # Flask-Admin's own export reads the list arguments the same way.
        args = self._get_list_extra_args()
        sort = self._get_column_by_idx(args.sort)
        _, query = self.get_list(
            0,
            sort[0] if sort else None,
            args.sort_desc,
            args.search,
            args.filters,
            execute=False,
            page_size=0,
        )
        return query

    def export_table(self) -> exports.Table:
        """The exported columns and the rows, streamed from a server-side cursor."""
        columns = [
            exports.Column(label, self.export_getter(name), self.column_export_formats.get(name))
            for name, label in self.get_export_columns()
        ]
        if request.args.get("publish") == "1":
            for (name, _), column in zip(self.get_export_columns(), columns, strict=True):
                if name in self.column_published:
                    column.get = self.published_getter(self.column_published[name], column.get)
        rows = self.export_query().yield_per(self.export_batch_size)
        return exports.Table(str(self.name), columns, rows)

    @property
    def can_publish(self) -> bool:
        """Whether this user may take a published export of this list."""
        return bool(self.column_published) and self.publish_refusal() is None

    def publish_refusal(self) -> str | None:
        """Why this user cannot take a published export of this list (German), or None."""
        if not self.column_published:
            return (
                "Diese Liste ist eine Arbeitsdatei und wird nicht veröffentlicht. Veröffentlicht "
                "wird der geprüfte Jahresbericht: Monitoring → Evaluationsbericht, „für "
                "Veröffentlichung“."
            )
        if is_scoped(current_user, "municipality"):
            return (
                "Veröffentlicht wird nur der Bericht über alle KIM-Kommunen: Bitte wenden Sie "
                "sich an die Kreisverwaltung oder die Steuerungsgruppe."
            )
        return None

    def published_getter(self, locate: Any, get: Any) -> Any:
        """``get`` for a published export: the cell as the year's publication shows it.

        ``locate(model)`` names the row's year and its cell in the publication
        (:func:`kim_admin.report.published_year`); each year is audited once per export.
        """
        years: dict[int, Any] = {}

        def published(model: Any) -> Any:
            year, key = locate(model)
            if year not in years:
                years[year] = report.published_year(year, current_user)
            publication = years[year]
            if publication is None:
                return suppression.SUPPRESSED
            return publication.published(key, get(model))

        return published

    def export_getter(self, name: str) -> Any:
        """How to read column ``name`` of a row: export formatter, choice label or value."""
        formatter = self.column_formatters_export.get(name)
        if formatter is not None:
            return lambda model: formatter(self, None, model, name)
        path = name.split(".")

        def value(model: Any) -> Any:
            for part in path:
                if model is None:
                    return None
                model = getattr(model, part)
            return model

        choices = dict(self.column_choices.get(name, [])) if self.column_choices else {}
        if choices:
            return lambda model: choices.get(value(model), value(model))
        return value

    # --- errors ----------------------------------------------------------------
    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, IntegrityError | StatementError | DBAPIError):
            log.warning("Database refused a change in %s: %s", self.endpoint, exc)
            flash(integrity_message(exc), "error")
            return True
        if isinstance(exc, ValidationError):
            flash(str(exc), "error")
            return True
        # Anything else: a German message for the user, the details only in the log.
        log.exception("Unexpected error in %s", self.endpoint)
        flash("Die Aktion ist fehlgeschlagen. Bitte versuchen Sie es erneut.", "error")
        return True
