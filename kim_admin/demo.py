"""A plausible demo data set: users of every role, rooms, posts, partners and
two years of quarterly figures for the KIM municipalities.

Figures are generated from a fixed seed and scaled by population, and they are
consistent: active cases = previous active + new - closed.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import delete, func, select

from models import (
    FigureTotal,
    FundingForward,
    Indicator,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    Partner,
    Post,
    PostFunding,
    PostVacancy,
    ReportingPeriod,
    Room,
    Submission,
    TargetGroup,
    User,
    partner_municipality,
    partner_target_group,
    post_target_group,
)

from . import audit
from .extensions import db
from .monitoring import periods as quarters
from .monitoring.status import APPROVED, DRAFT, RETURNED, SUBMITTED
from .permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF, STEERING_GROUP
from .reference import load_reference_data

# Printed by `flask demo seed`: demo accounts are public by design.
DEMO_PASSWORD = "kim-demo-2026"  # noqa: S105
DEMO_DOMAIN = "hsk-demo.example"

# Tables the demo fills; --force empties them (reference data stays). The audit
# trail is never emptied: the reset itself is recorded in it.
_DEMO_TABLES = [
    FundingForward,
    PostFunding,
    PostVacancy,
    NeedsAssessment,
    FigureTotal,
    MonitoringEntry,
    Submission,
    ReportingPeriod,
    post_target_group,
    Post,
    partner_municipality,
    partner_target_group,
    Partner,
    Room,
    User,
]


class DatabaseNotEmpty(RuntimeError):
    """The database already holds users or operational data."""


class DemoRefused(RuntimeError):
    """Demo data are not allowed here (production)."""


def is_empty() -> bool:
    """True when there are no users, rooms, posts, partners or figures yet."""
    for model in (User, Room, Post, Partner, MonitoringEntry):
        if db.session.scalar(select(func.count()).select_from(model)):
            return False
    return True


def demo_logins() -> list[tuple[str, str, str]]:
    """(e-mail, role, municipality) of the demo users present in the database."""
    users = db.session.scalars(
        select(User).where(User.email.like(f"%@{DEMO_DOMAIN}")).order_by(User.id)
    )
    return [(u.email, u.role, u.municipality.name if u.municipality else "") for u in users]


def seed(force: bool = False, today: date | None = None) -> dict[str, int]:
    """Load reference data and the demo set; return counts of what was created.

    Refused when ``KIM_ENV=production``: demo accounts share a published password.
    """
    if current_app.config.get("KIM_ENV") == "production":
        raise DemoRefused(
            "Demo-Daten sind in der Produktion (KIM_ENV=production) nicht erlaubt: "
            "die Demo-Zugänge haben ein veröffentlichtes Passwort."
        )
    if not is_empty():
        if not force:
            raise DatabaseNotEmpty(
                "Die Datenbank enthält bereits Daten. Mit --force werden Benutzer, Räume, "
                "Stellen, Partner, Meldezeiträume und Kennzahlwerte gelöscht und neu erzeugt."
            )
        for table in _DEMO_TABLES:
            db.session.execute(delete(getattr(table, "__table__", table)))
        audit.record(
            "demo_reset",
            new={
                "tables": [
                    getattr(t, "__tablename__", getattr(t, "name", "")) for t in _DEMO_TABLES
                ]
            },
        )
        db.session.commit()

    load_reference_data()
    rng = random.Random(5958)  # noqa: S311 -- reproducible demo figures, not secrets
    today = today or date.today()
    municipalities = db.session.scalars(select(Municipality).order_by(Municipality.name)).all()
    participants = [m for m in municipalities if m.kim_participant]
    groups = db.session.scalars(select(TargetGroup).order_by(TargetGroup.sort_order)).all()

    users = _seed_users(participants)
    partners = _seed_partners(participants, groups)
    rooms = _seed_rooms(rng, participants)
    posts = _seed_posts(rng, participants, groups, partners)
    needs = _seed_needs(rng, participants, groups, today.year)
    periods = _seed_periods(today)
    entries = _seed_figures(rng, participants, groups, periods, users)
    _seed_funding(rng, today)
    db.session.commit()
    return {
        "users": len(users),
        "partners": len(partners),
        "rooms": rooms,
        "posts": posts,
        "periods": len(periods),
        "entries": entries,
        "needs": needs,
    }


def _seed_users(participants: list[Municipality]) -> list[User]:
    users = [
        User(email=f"kreis@{DEMO_DOMAIN}", name="Kreisverwaltung (Demo)", role=DISTRICT_ADMIN),
        User(
            email=f"steuerung@{DEMO_DOMAIN}",
            name="Steuerungsgruppe (Demo)",
            role=STEERING_GROUP,
        ),
    ]
    for m in participants:
        slug = m.name.split(" ")[0].lower()
        users.append(
            User(
                email=f"{slug}@{DEMO_DOMAIN}",
                name=f"{m.name.split(' ')[0]} (Demo)",
                role=MUNICIPAL_STAFF,
                municipality=m,
            )
        )
    for user in users:
        user.set_password(DEMO_PASSWORD)
    db.session.add_all(users)
    return users


def _seed_partners(participants: list[Municipality], groups: list[TargetGroup]) -> list[Partner]:
    by_name = {m.name.split(" ")[0]: m for m in participants}
    g = {tg.name.split(" ")[0]: tg for tg in groups}
    spec = [
        ("Jobcenter Hochsauerlandkreis", "jobcenter", [], ["Geflüchtete", "Schutzsuchende"]),
        ("Agentur für Arbeit Meschede-Soest", "agentur_fuer_arbeit", [], ["Drittstaatsangehörige"]),
        ("Ausländerbehörde HSK", "auslaenderbehoerde", [], ["Geduldete", "Asylsuchende"]),
        (
            "Caritasverband Arnsberg-Sundern",
            "wohlfahrtsverband",
            ["Arnsberg", "Sundern"],
            ["Familien", "Frauen"],
        ),
        (
            "Diakonie Hochsauerland-Soest",
            "wohlfahrtsverband",
            ["Meschede", "Bestwig"],
            ["Geflüchtete"],
        ),
        ("Jugendmigrationsdienst Arnsberg", "jmd", ["Arnsberg"], ["Junge"]),
        # Serves families in Arnsberg like the Caritas: a parallel structure to discuss.
        ("AWO Unterbezirk Hochsauerland", "wohlfahrtsverband", ["Arnsberg"], ["Familien"]),
        (
            "Migrationsberatung für Erwachsene Meschede",
            "mbe",
            ["Meschede", "Schmallenberg"],
            ["EU-Zugewanderte", "Drittstaatsangehörige"],
        ),
        ("VHS Hochsauerlandkreis", "vhs", [], ["Geflüchtete", "EU-Zugewanderte"]),
        (
            "Flüchtlingshilfe Medebach e. V.",
            "ehrenamt",
            ["Medebach", "Hallenberg"],
            ["Asylsuchende"],
        ),
    ]
    partners = []
    for name, kind, towns, group_keys in spec:
        partner = Partner(
            name=name,
            kind=kind,
            contact_person="Ansprechperson (Demo)",
            email=f"kontakt@{DEMO_DOMAIN}",
            phone="0291 94-0",
            cooperation_since=date(2021, 7, 1),
            written_agreement=kind in ("jobcenter", "wohlfahrtsverband"),
            municipalities=[by_name[t] for t in towns],
            target_groups=[g[k] for k in group_keys],
        )
        partners.append(partner)
    db.session.add_all(partners)
    return partners


def _seed_rooms(rng: random.Random, participants: list[Municipality]) -> int:
    count = 0
    for m in participants:
        town = m.name.split(" ")[0]
        rooms = [
            Room(
                name=f"Beratungsraum Rathaus {town}",
                kind="beratungsraum",
                seats=4,
                barrier_free=True,
                availability="Mo–Do 8–16 Uhr",
            ),
            Room(
                name=f"Büro KIM {town}",
                kind="buero",
                seats=2,
                barrier_free=rng.random() < 0.6,
                availability="nach Vereinbarung",
            ),
        ]
        if m.population > 20000:
            rooms.append(
                Room(
                    name=f"Gruppenraum Familienzentrum {town}",
                    kind="gruppenraum",
                    seats=16,
                    barrier_free=True,
                    availability="Di 14–18 Uhr",
                )
            )
        for room in rooms:
            room.municipality = m
            room.address = f"Marktplatz {rng.randint(1, 20)}, {town}"
        db.session.add_all(rooms)
        count += len(rooms)
    return count


def _seed_posts(
    rng: random.Random,
    participants: list[Municipality],
    groups: list[TargetGroup],
    partners: list[Partner],
) -> int:
    # Kreis-level posts: (title, function, Baustein, FTE, status, since)
    kreis_posts = [
        ("Koordination KIM", "koordination", "1", "1.00", "besetzt", 2021),
        ("Koordination KIM (2)", "koordination", "1", "1.00", "besetzt", 2021),
        ("Koordination Teilhabe", "koordination", "1", "1.00", "ausgeschrieben", 2025),
        ("Verwaltungsassistenz KIM", "verwaltungsassistenz", "1", "0.50", "besetzt", 2021),
        ("Sachbearbeitung §§ 25a/25b AufenthG", "auslaenderbehoerde", "3", "1.00", "besetzt", 2022),
        ("Sachbearbeitung Einbürgerung", "einbuergerungsbehoerde", "3", "0.75", "vakant", 2022),
    ]
    posts = [
        Post(
            title=title,
            function=function,
            baustein=baustein,
            employer_type="kreis",
            fte=Decimal(fte),
            status=status,
            valid_from=date(since, 1, 1),
        )
        for title, function, baustein, fte, status, since in kreis_posts
    ]
    welfare = [p for p in partners if p.kind == "wohlfahrtsverband"]
    for i, m in enumerate(participants):
        town = m.name.split(" ")[0]
        fte = Decimal("1.00") if m.population > 20000 else Decimal("0.50")
        partner = welfare[i % len(welfare)] if i % 3 == 2 else None
        post = Post(
            title=f"Case Management {town}",
            municipality=m,
            function="case_management",
            baustein="2",
            employer_type="partner" if partner else "kommune",
            employer_partner=partner,
            fte=fte,
            status="besetzt" if rng.random() < 0.85 else "vakant",
            valid_from=date(2021, 7, 1),
            target_groups=rng.sample(groups, 3),
        )
        posts.append(post)
        if m.population > 25000:
            posts.append(
                Post(
                    title=f"Case Management {town} (2)",
                    municipality=m,
                    function="case_management",
                    baustein="2",
                    employer_type="kommune",
                    fte=Decimal("0.50"),
                    status="besetzt",
                    valid_from=date(2023, 1, 1),
                    target_groups=rng.sample(groups, 2),
                )
            )
    db.session.add_all(posts)
    return len(posts)


# Grant per full-time post and year by Baustein (EUR; Baustein 1 up to 57,000).
_GRANT_PER_FTE = {"1": Decimal("57000"), "2": Decimal("60000"), "3": Decimal("55000")}


def _seed_funding(rng: random.Random, today: date) -> int:
    """Grants of last year and this one for every funded post, 95 % forwarded where a town
    or a Träger employs the post, and a vacancy for each post that is not filled."""
    db.session.flush()
    posts = db.session.scalars(select(Post).order_by(Post.id)).all()
    grants = []
    for year in (today.year - 1, today.year):
        for post in posts:
            if post.baustein not in _GRANT_PER_FTE or post.valid_from.year > year:
                continue
            amount = _GRANT_PER_FTE[post.baustein] * post.fte
            grant = PostFunding(
                post=post,
                year=year,
                baustein=post.baustein,
                funded_fte=post.fte,
                funded_from=max(post.valid_from, date(year, 1, 1)),
                funded_until=date(year, 12, 31),
                grant_amount=amount,
                notice_number=f"51.2-KIM-{year}/{post.baustein}",
                notice_date=date(year, 1, 20),
            )
            if post.employer_type != "kreis":
                grant.forwards = [
                    FundingForward(
                        municipality=post.municipality if post.employer_type == "kommune" else None,
                        partner=post.employer_partner,
                        amount=(amount * Decimal("0.95")).quantize(Decimal("0.01")),
                        forwarded_on=date(year, 3, 1),
                    )
                ]
            grants.append(grant)
    vacancies = [
        PostVacancy(post=p, vacant_from=date(today.year, rng.randint(1, today.month), 1))
        for p in posts
        if p.status != "besetzt"
    ]
    db.session.add_all([*grants, *vacancies])
    return len(grants)


def _seed_needs(
    rng: random.Random, participants: list[Municipality], groups: list[TargetGroup], year: int
) -> int:
    """A needs assessment of the current year: six target groups per municipality."""
    needs = []
    for m in participants:
        scale = m.population / 10000
        for group in rng.sample(groups, 6):
            needs.append(
                NeedsAssessment(
                    municipality=m,
                    target_group=group,
                    year=year,
                    estimated_people=rng.randint(1, int(20 * scale) + 2),
                    priority=rng.choice(["hoch", "mittel", "mittel", "niedrig"]),
                    notes="Schätzung aus dem Runden Tisch (Demo)",
                )
            )
    db.session.add_all(needs)
    return len(needs)


def _seed_periods(today: date) -> list[ReportingPeriod]:
    """Eight past quarters (closed) and the current one (open)."""
    current = quarters.quarter_of(today)
    periods = []
    for back in range(8, -1, -1):
        year, quarter = quarters.shift(*current, -back)
        period = ReportingPeriod(year=year, quarter=quarter)
        # Deadline: the 15th of the month after the quarter ends.
        period.deadline = quarters.bounds(year, quarter)[1] + timedelta(days=15)
        period.is_open = (year, quarter) == current
        periods.append(period)
    db.session.add_all(periods)
    db.session.flush()
    return periods


def _seed_figures(
    rng: random.Random,
    participants: list[Municipality],
    groups: list[TargetGroup],
    periods: list[ReportingPeriod],
    users: list[User],
) -> int:
    """Figures for every past quarter; the open quarter stays empty."""
    indicators = {i.code: i for i in db.session.scalars(select(Indicator))}
    staff = {u.municipality_id: u for u in users if u.role == MUNICIPAL_STAFF}
    district = users[0]
    entries: list[MonitoringEntry] = []
    past = [p for p in periods if not p.is_open]
    for m in participants:
        scale = m.population / 10000
        active = {g.id: rng.randint(0, int(3 * scale) + 1) for g in groups}
        user = staff.get(m.id)
        for n, period in enumerate(past):
            stamp = datetime.combine(period.deadline or period.ends_on, time(10, 0))
            common = {
                "municipality": m,
                "period": period,
                "created_by": user,
                "updated_by": user,
                "created_at": stamp,
                "updated_at": stamp,
            }

            def add(
                code: str,
                value: Decimal | int,
                group: TargetGroup | None = None,
                common: dict = common,
            ) -> None:
                entries.append(
                    MonitoringEntry(
                        indicator=indicators[code],
                        target_group=group,
                        value=Decimal(value),
                        **common,
                    )
                )

            for g in groups:
                new = rng.randint(0, int(1.5 * scale) + 1)
                closed = min(active[g.id] + new, rng.randint(0, int(1.2 * scale) + 1))
                active[g.id] = active[g.id] + new - closed
                add("CM_NEU", new, g)
                add("CM_ABG", closed, g)
                add("CM_AKT", active[g.id], g)
            total_active = sum(active.values())
            add("BER_KONT", total_active * rng.randint(2, 4) + rng.randint(0, 10))
            add("VERM", rng.randint(0, max(1, total_active // 2)))
            add("FALLKONF", rng.randint(0, 4))
            add("VZAE_BES", Decimal("1.00") if m.population > 20000 else Decimal("0.50"))
            last = n == len(past) - 1
            status = APPROVED
            if last:
                status = rng.choice([SUBMITTED, APPROVED, DRAFT, RETURNED])
            sub = Submission(municipality=m, period=period, status=status)
            if status != DRAFT:
                sub.submitted_at, sub.submitted_by = stamp, user
                sub.first_submitted_at = stamp
            if status in (APPROVED, RETURNED):
                sub.reviewed_at, sub.reviewed_by = stamp, district
            if status == RETURNED:
                sub.return_reason = "Bitte die Zahl der Beratungskontakte prüfen."
            db.session.add(sub)
    db.session.add_all(entries)
    return len(entries)
