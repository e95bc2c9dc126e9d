"""Roles and the permission table: the one place that says who may do what.

Every view asks :func:`can` (through ``views.base``); anything not granted
here is refused. Resources are named like the tables and admin endpoints.
"""

from __future__ import annotations

from typing import Any

DISTRICT_ADMIN = "district_admin"
MUNICIPAL_STAFF = "municipal_staff"
STEERING_GROUP = "steering_group"

ROLES = [
    (DISTRICT_ADMIN, "Kreisverwaltung"),
    (MUNICIPAL_STAFF, "Kommune"),
    (STEERING_GROUP, "Steuerungsgruppe"),
]

READ = "read"
CREATE = "create"
EDIT = "edit"
DELETE = "delete"
EXPORT = "export"
ACTIONS = (READ, CREATE, EDIT, DELETE, EXPORT)

_ALL = frozenset(ACTIONS)
_READ_EXPORT = frozenset({READ, EXPORT})
_READ = frozenset({READ})
# The report for politics: read the page and its versions, write the narrative
# (EDIT), generate a PDF (CREATE), download a stored one (EXPORT); versions stay.
_REPORT_PDF = frozenset({READ, EDIT, CREATE, EXPORT})

# role -> resource -> allowed actions. A resource or role missing here gets nothing.
PERMISSIONS: dict[str, dict[str, frozenset[str]]] = {
    DISTRICT_ADMIN: {
        "municipality": _ALL,
        "target_group": _ALL,
        "room": _ALL,
        "post": _ALL,
        "partner": _ALL,
        "indicator": _ALL,
        "reporting_period": _ALL,
        # Figures and submissions change only through the reporting cycle
        # (kim_admin.monitoring: the data-entry page and its import); the lists read.
        "monitoring_entry": _READ_EXPORT,
        "submission": _READ_EXPORT,
        "data_entry": frozenset({READ, EDIT}),
        "meldestand": _READ,
        "report": _READ_EXPORT,
        "needs_assessment": _ALL,
        "coverage": _READ_EXPORT,
        "validation_rule": _ALL,
        "user": _ALL,
        # The audit trail is append-only: nobody edits or deletes it in the app.
        "audit_event": _READ_EXPORT,
        # The e-mail outbox, to follow up failed deliveries; written only by `flask notify run`.
        "notification": _READ_EXPORT,
        "dashboard": _READ,
        "account": _READ,
        # Funding (Förderung): grants per post and year, vacancies, the funding-year
        # view and its Zahlenmäßiger Nachweis.
        "post_funding": _ALL,
        "post_vacancy": _ALL,
        "funding_year": _READ_EXPORT,
        # The steering group's workspace (Handlungsfeld 4).
        "meeting": _ALL,
        "decision": _ALL,
        "measure": _ALL,
        "structural_problem": _ALL,
        "problem_overview": _READ,
        "report_pdf": _REPORT_PDF,
    },
    STEERING_GROUP: {
        "municipality": _READ_EXPORT,
        "target_group": _READ_EXPORT,
        "room": _READ_EXPORT,
        "post": _READ_EXPORT,
        "partner": _READ_EXPORT,
        "indicator": _READ_EXPORT,
        "reporting_period": _READ_EXPORT,
        "monitoring_entry": _READ_EXPORT,
        "submission": _READ_EXPORT,
        "data_entry": _READ,
        "meldestand": _READ,
        "report": _READ_EXPORT,
        "needs_assessment": _READ_EXPORT,
        "coverage": _READ_EXPORT,
        "validation_rule": _READ_EXPORT,
        "dashboard": _READ,
        "account": _READ,
        "post_funding": _READ_EXPORT,
        "post_vacancy": _READ_EXPORT,
        "funding_year": _READ_EXPORT,
        # Its own workspace: meetings, decisions, measures and the report for politics.
        "meeting": _ALL,
        "decision": _ALL,
        "measure": _ALL,
        # What the towns report, read per row and aggregated across towns and quarters.
        "structural_problem": _READ_EXPORT,
        "problem_overview": _READ,
        "report_pdf": _REPORT_PDF,
    },
    MUNICIPAL_STAFF: {
        "target_group": _READ,
        "partner": _READ,
        "indicator": _READ,
        "reporting_period": _READ,
        # Scoped to the user's own municipality (see SCOPED_BY_MUNICIPALITY).
        "room": _READ_EXPORT,
        "post": _READ_EXPORT,
        # Entered on the data-entry page while the quarter is open
        # (kim_admin.monitoring.workflow decides); the list only reads.
        "monitoring_entry": _READ_EXPORT,
        "submission": _READ,
        "data_entry": frozenset({READ, EDIT}),
        # Their own municipality's history and reporting rate.
        "meldestand": _READ,
        # The evaluation report of their own municipality only (kim_admin.report).
        "report": _READ_EXPORT,
        # Their own municipality's needs and coverage (SCOPED_BY_MUNICIPALITY).
        "needs_assessment": _READ_EXPORT,
        "coverage": _READ_EXPORT,
        "validation_rule": _READ,
        "dashboard": _READ,
        "account": _READ,
        # The funding of their own municipality's posts, read only (scoped like the
        # posts); the Nachweis is the Kreis' statement to the Land: no export.
        "post_funding": _READ,
        "post_vacancy": _READ,
        "funding_year": _READ,
        # Their own town's structural problems (SCOPED_BY_MUNICIPALITY), and the
        # steering group's measures that name their town.
        "structural_problem": _ALL,
        "measure": _READ,
    },
}

# Resources whose rows belong to one municipality, with the column that says which.
# A municipal user only ever reaches rows whose column equals their municipality.
SCOPED_BY_MUNICIPALITY: dict[str, str] = {
    # Only pickers list municipalities to municipal users: their own, nothing else.
    "municipality": "id",
    "room": "municipality_id",
    "post": "municipality_id",
    "monitoring_entry": "municipality_id",
    "submission": "municipality_id",
    "needs_assessment": "municipality_id",
    # Through the post (a hybrid column of the post's municipality).
    "post_funding": "municipality_id",
    "post_vacancy": "municipality_id",
    "structural_problem": "municipality_id",
    # A relation to several municipalities: a row is reached when it names the user's.
    "measure": "municipalities",
}


def can(user: Any, resource: str, action: str) -> bool:
    """Whether ``user`` may perform ``action`` on ``resource``."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if not getattr(user, "is_active", False):
        return False
    if user.role == MUNICIPAL_STAFF and user.municipality_id is None:
        return False  # the database forbids it; never fall back to "all municipalities"
    return action in PERMISSIONS.get(user.role, {}).get(resource, frozenset())


def is_scoped(user: Any, resource: str) -> bool:
    """Whether ``user`` only reaches their own municipality's rows of ``resource``."""
    return user.role == MUNICIPAL_STAFF and resource in SCOPED_BY_MUNICIPALITY


def apply_scope(query: Any, model: Any, resource: str, user: Any) -> Any:
    """Limit a ``Query`` or ``select()`` over ``model`` to the rows ``user`` may reach."""
    if not is_scoped(user, resource):
        return query
    column = getattr(model, SCOPED_BY_MUNICIPALITY[resource])
    # A relation to several municipalities (a list) or a column; a hybrid column (the
    # municipality through another row) has no mapper property at all.
    if getattr(getattr(column, "property", None), "uselist", False):
        return query.filter(column.any(id=user.municipality_id))
    return query.filter(column == user.municipality_id)


def in_scope(obj: Any, resource: str, user: Any) -> bool:
    """Whether the loaded row ``obj`` of ``resource`` lies in ``user``'s scope."""
    if not is_scoped(user, resource):
        return True
    value = getattr(obj, SCOPED_BY_MUNICIPALITY[resource])
    if isinstance(value, list):
        return any(town.id == user.municipality_id for town in value)
    return value == user.municipality_id


def role_label(role: str | None) -> str:
    """German label of a role code."""
    return dict(ROLES).get(role or "", role or "")
