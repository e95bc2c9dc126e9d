"""Small functions that create test data (Redash's ``tests/factories.py``, CTFd's helpers).

Each adds its row to ``db.session`` and flushes, so the row has its id; the caller
commits. Call them inside an application context of an app built from
:data:`tests.support.TEST_CONFIG` (passwords are then hashed cheaply).
Reference data (municipalities, target groups, indicators) is already in every
test database; :func:`town`, :func:`group` and :func:`indicator` look it up.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from kim_admin.extensions import db
from kim_admin.permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF, STEERING_GROUP
from models import (
    Decision,
    Indicator,
    Measure,
    Meeting,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    Partner,
    Post,
    PostFunding,
    PostVacancy,
    ReportingPeriod,
    Room,
    StructuralProblem,
    Submission,
    TargetGroup,
    User,
)

from .support import PASSWORD

TownLike = Municipality | str | None


def _add(row):
    db.session.add(row)
    db.session.flush()
    return row


# --- reference data ------------------------------------------------------------


def town(name: TownLike) -> Municipality | None:
    """The municipality named ``name`` (or ``name`` itself if it is one)."""
    if name is None or isinstance(name, Municipality):
        return name
    found = db.session.scalar(select(Municipality).where(Municipality.name == name))
    assert found is not None, f"no municipality {name!r} in the reference data"
    return found


def group(position: int = 0) -> TargetGroup:
    """A target group of the reference data, by position (0 = the first)."""
    return db.session.scalars(select(TargetGroup).order_by(TargetGroup.id)).all()[position]


def indicator(code: str) -> Indicator:
    """An indicator of the reference data by its code (e.g. ``BER_KONT``)."""
    found = db.session.scalar(select(Indicator).where(Indicator.code == code))
    assert found is not None, f"no indicator {code!r} in the reference data"
    return found


# --- users -----------------------------------------------------------------------


def user(
    email: str,
    role: str = STEERING_GROUP,
    municipality: TownLike = None,
    password: str = PASSWORD,
    **fields: Any,
) -> User:
    """A user with ``password`` (hashed with the app's ``KIM_PASSWORD_HASH_METHOD``)."""
    fields.setdefault("name", email.split("@")[0].title())
    row = User(email=email, role=role, municipality=town(municipality), **fields)
    row.set_password(password)
    return _add(row)


def district_admin(email: str = "kreis@test.example", **fields: Any) -> User:
    return user(email, DISTRICT_ADMIN, **fields)


def steering_member(email: str = "steuerung@test.example", **fields: Any) -> User:
    return user(email, STEERING_GROUP, **fields)


def municipal_staff(municipality: TownLike, email: str | None = None, **fields: Any) -> User:
    """A municipal user of ``municipality`` (e-mail after the town unless given)."""
    place = town(municipality)
    assert place is not None
    email = email or f"{place.name.split()[0].lower()}@test.example"
    return user(email, MUNICIPAL_STAFF, place, **fields)


# --- master data and figures ---------------------------------------------------------


def period(year: int = 2026, quarter: int = 1, is_open: bool = True, **fields: Any):
    """A reporting period (quarter)."""
    return _add(ReportingPeriod(year=year, quarter=quarter, is_open=is_open, **fields))


def room(municipality: TownLike, name: str = "Beratungsraum", **fields: Any) -> Room:
    fields.setdefault("kind", "buero")
    return _add(Room(name=name, municipality=town(municipality), **fields))


def post(municipality: TownLike, title: str = "Case Management", **fields: Any) -> Post:
    """A post; by default half a case-management post of the town (Baustein 2)."""
    fields.setdefault("employer_type", "kommune" if municipality is not None else "kreis")
    fields.setdefault("function", "case_management")
    fields.setdefault("baustein", "2")
    fields.setdefault("fte", Decimal("0.5"))
    return _add(Post(title=title, municipality=town(municipality), **fields))


def funding(post: Post, year: int = 2026, **fields: Any) -> PostFunding:
    """A grant for ``post`` over the whole ``year`` (its Baustein and FTE, 10,000 EUR)."""
    fields.setdefault("baustein", post.baustein if post.baustein != "eigen" else "2")
    fields.setdefault("funded_fte", post.fte)
    fields.setdefault("funded_from", date(year, 1, 1))
    fields.setdefault("funded_until", date(year, 12, 31))
    fields.setdefault("grant_amount", Decimal("10000"))
    return _add(PostFunding(post=post, year=year, **fields))


def vacancy(post: Post, vacant_from: date, vacant_until: date | None = None, **fields: Any):
    """A period in which ``post`` was not filled (open-ended without ``vacant_until``)."""
    return _add(
        PostVacancy(post=post, vacant_from=vacant_from, vacant_until=vacant_until, **fields)
    )


def partner(name: str, kind: str = "sonstige", municipalities=(), **fields: Any) -> Partner:
    """A cooperation partner serving ``municipalities`` (none = the whole district)."""
    row = Partner(name=name, kind=kind, **fields)
    row.municipalities = [town(m) for m in municipalities]
    return _add(row)


def needs(municipality: TownLike, target_group: TargetGroup, year: int = 2026, **fields: Any):
    """A needs assessment of one town for one target group."""
    return _add(
        NeedsAssessment(
            municipality=town(municipality), target_group=target_group, year=year, **fields
        )
    )


def entry(
    municipality: TownLike,
    period: ReportingPeriod,
    indicator: Indicator,
    value: Decimal | int | None,
    target_group: TargetGroup | None = None,
    **fields: Any,
) -> MonitoringEntry:
    """One figure, written straight into the table (set-up only: the app's write path
    is the data-entry page)."""
    return _add(
        MonitoringEntry(
            municipality=town(municipality),
            period=period,
            indicator=indicator,
            target_group=target_group,
            value=None if value is None else Decimal(value),
            **fields,
        )
    )


def submission(municipality: TownLike, period: ReportingPeriod, status: str = "draft", **fields):
    """A submission in ``status``, written straight into the table (set-up only)."""
    return _add(Submission(municipality=town(municipality), period=period, status=status, **fields))


def quarter_world() -> dict[str, Any]:
    """Q1/2026 (closed) and Q2/2026 (open, deadline in 30 days), committed, and the
    ids the reporting-cycle tests need, by name."""
    prev = ReportingPeriod(year=2026, quarter=1, is_open=False, deadline=date(2026, 4, 15))
    current = ReportingPeriod(
        year=2026, quarter=2, is_open=True, deadline=date.today() + timedelta(days=30)
    )
    db.session.add_all([prev, current])
    db.session.commit()
    towns = {m.name: m.id for m in db.session.scalars(select(Municipality))}
    return {
        "period": current.id,
        "prev": prev.id,
        "arnsberg": towns["Arnsberg"],
        "meschede": towns["Meschede"],
        "codes": {i.code: i.id for i in db.session.scalars(select(Indicator))},
        "groups": list(db.session.scalars(select(TargetGroup.id).order_by(TargetGroup.id))),
        "users": {u.email.split("@")[0]: u.id for u in db.session.scalars(select(User))},
    }


# --- the steering group's workspace --------------------------------------------------


def meeting(place: str = "Kreishaus Meschede", held_on: date = date(2026, 3, 2), **fields: Any):
    """A steering-group meeting; ``municipalities`` etc. as lists of rows or names."""
    towns = [town(m) for m in fields.pop("municipalities", ())]
    row = Meeting(place=place, held_on=held_on, **fields)
    row.municipalities = towns
    return _add(row)


def decision(meeting: Meeting, title: str = "Beschluss", **fields: Any) -> Decision:
    return _add(Decision(meeting=meeting, title=title, **fields))


def measure(title: str = "Maßnahme", municipalities=(), **fields: Any) -> Measure:
    """A measure concerning ``municipalities`` (rows or names), status "geplant"."""
    row = Measure(title=title, **fields)
    row.municipalities = [town(m) for m in municipalities]
    return _add(row)


def structural_problem(
    municipality: TownLike, period: ReportingPeriod, category: str = "kinderbetreuung", **fields
) -> StructuralProblem:
    fields.setdefault("description", "Keine Kinderbetreuung während der Sprachkurse")
    fields.setdefault("frequency", "haeufig")
    return _add(
        StructuralProblem(
            municipality=town(municipality), period=period, category=category, **fields
        )
    )
