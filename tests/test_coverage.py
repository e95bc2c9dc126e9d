"""Needs assessment and coverage matrix: gaps, parallel structures, covered fields, scope."""

from __future__ import annotations

import io
from decimal import Decimal

import openpyxl
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kim_admin import coverage
from kim_admin.extensions import db
from models import Municipality, NeedsAssessment, Partner, Post, TargetGroup, User

from .support import report_download

YEAR = 2026


@pytest.fixture
def case(app, accounts):
    """One constructed field of each kind (names: short keys of towns and groups)."""
    with app.app_context():
        t = {m.name.split(" ")[0]: m for m in db.session.scalars(select(Municipality))}
        g = db.session.scalars(select(TargetGroup).order_by(TargetGroup.sort_order)).all()

        def need(town, group, people=10):
            db.session.add(
                NeedsAssessment(
                    municipality=t[town], target_group=group, year=YEAR, estimated_people=people
                )
            )

        def post(town, group, employer="kommune", partner=None, fte="0.50"):
            db.session.add(
                Post(
                    title=f"CM {town} {group.name[:10]}",
                    municipality=t[town] if town else None,
                    employer_type=employer,
                    employer_partner=partner,
                    function="case_management",
                    baustein="2",
                    fte=Decimal(fte),
                    status="besetzt",
                    target_groups=[group],
                )
            )

        # Gap: Arnsberg needs support for group 0; nobody serves it there.
        need("Arnsberg", g[0])
        # Covered: Bestwig, group 1, one post of the town.
        need("Bestwig", g[1])
        post("Bestwig", g[1])
        # Parallel partners: two welfare organisations for group 2 in Meschede
        # (one local, one district-wide).
        need("Meschede", g[2])
        caritas = Partner(name="Caritas", kind="wohlfahrtsverband", target_groups=[g[2]])
        diakonie = Partner(
            name="Diakonie",
            kind="wohlfahrtsverband",
            municipalities=[t["Meschede"]],
            target_groups=[g[2]],
        )
        # Two "sonstige" partners are no parallel structure.
        other_a = Partner(
            name="Verein A", kind="sonstige", municipalities=[t["Medebach"]], target_groups=[g[4]]
        )
        other_b = Partner(
            name="Verein B", kind="sonstige", municipalities=[t["Medebach"]], target_groups=[g[4]]
        )
        db.session.add_all([caritas, diakonie, other_a, other_b])
        # Parallel posts: the town and a welfare organisation employ posts for group 3.
        need("Sundern", g[3])
        post("Sundern", g[3])
        post("Sundern", g[3], employer="partner", partner=diakonie)
        # A district-level post serves group 5 everywhere: Hallenberg's need is covered.
        need("Hallenberg", g[5])
        post(None, g[5], employer="kreis", fte="1.00")
        db.session.commit()
        return {"towns": {k: m.id for k, m in t.items()}, "groups": [x.id for x in g]}


def _cell(rows, town, group_id):
    return next(r for r in rows if r.town.startswith(town) and r.group == group_id)


class Cell:
    """What a test needs of a coverage row, read while the session is open."""

    def __init__(self, row: coverage.CoverageRow) -> None:
        self.town = row.municipality.name
        self.group = row.group.id
        self.gap, self.parallel, self.flags = row.gap, row.parallel, row.flags
        self.local_fte, self.district_fte = row.local_fte, row.district_fte
        self.reasons = row.reasons
        self.partners = [p.name for p in row.partners]


def _matrix(app, email):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        return [Cell(r) for r in coverage.matrix(YEAR, user)]


def test_flags_on_constructed_cases(app, case, accounts):
    rows = _matrix(app, accounts.district)
    g = case["groups"]
    gap = _cell(rows, "Arnsberg", g[0])
    assert gap.gap and not gap.parallel and gap.flags == ["Lücke"]
    covered = _cell(rows, "Bestwig", g[1])
    assert not covered.gap and not covered.parallel and covered.local_fte == 0.5
    partners = _cell(rows, "Meschede", g[2])
    assert partners.parallel and not partners.gap
    assert partners.reasons == ["2 Partner der Art Wohlfahrtsverband"]
    posts = _cell(rows, "Sundern", g[3])
    assert posts.parallel and posts.local_fte == 1.0
    assert posts.reasons[-1].startswith("Stellen von 2 Anstellungsträgern")
    assert not _cell(rows, "Medebach", g[4]).parallel  # "Sonstige" is no kind of its own
    district = _cell(rows, "Hallenberg", g[5])
    assert not district.gap and district.district_fte == 1.0 and district.local_fte == 0
    # A district-wide partner serves group 2 in every town, the Diakonie only in Meschede.
    assert not _cell(rows, "Arnsberg", g[2]).parallel
    assert _cell(rows, "Arnsberg", g[2]).partners == ["Caritas"]
    # No need recorded, nobody serving: no gap either.
    assert not _cell(rows, "Winterberg", g[0]).gap
    assert sum(r.gap for r in rows) == 1 and sum(r.parallel for r in rows) == 2


def test_municipal_user_sees_own_fields_only(app, case, accounts, as_arnsberg):
    rows = _matrix(app, accounts.arnsberg)
    assert {r.town for r in rows} == {"Arnsberg"}
    page = as_arnsberg.get("/versorgung/").get_data(as_text=True)
    assert "Arnsberg" in page and "Meschede" not in page and "Sundern" not in page
    export = as_arnsberg.get("/versorgung/export/xlsx/")
    sheet = openpyxl.load_workbook(io.BytesIO(export.data)).active
    assert {r[0] for r in sheet.iter_rows(min_row=2, values_only=True)} == {"Arnsberg"}
    # Asking for another town by URL shows nothing of it.
    foreign = case["towns"]["Meschede"]
    page = as_arnsberg.get(f"/versorgung/?municipality={foreign}").get_data(as_text=True)
    assert "Meschede" not in page


def test_page_filters_and_export(case, as_steering):
    plain = as_steering.get("/versorgung/").get_data(as_text=True)
    assert "is-invalid" not in plain, "the defaults are valid choices"
    assert "badge-danger" in plain and "badge-warning" in plain
    page = as_steering.get(f"/versorgung/?year={YEAR}&flag=gap").get_data(as_text=True)
    assert "1 Feld:" in page and "Arnsberg" in page and "badge-danger" in page
    page = as_steering.get(f"/versorgung/?year={YEAR}&flag=parallel").get_data(as_text=True)
    assert "2 Felder" in page and "2 Partner der Art Wohlfahrtsverband" in page
    response = as_steering.get(f"/versorgung/export/xlsx/?year={YEAR}&flag=parallel")
    sheet = openpyxl.load_workbook(io.BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Kommune", "Zielgruppe", "Geschätzter Bedarf (Personen)")
    assert sorted(r[0] for r in rows[1:]) == ["Meschede", "Sundern (Sauerland)"]
    assert all(r[9] == "Parallelstruktur" for r in rows[1:])
    csv = as_steering.get(f"/versorgung/export/csv/?year={YEAR}&flag=gap").get_data(as_text=True)
    assert "Lücke" in csv and "Meschede" not in csv


def test_report_has_coverage_sheet(app, case, accounts, as_steering):
    from kim_admin import report
    from models import ReportingPeriod

    with app.app_context():
        period = ReportingPeriod(year=YEAR, quarter=1)
        db.session.add(period)
        db.session.commit()
        period_id = period.id
    response = report_download(
        as_steering,
        {
            "first": str(period_id),
            "last": str(period_id),
            "municipalities": [str(i) for i in case["towns"].values()],
            "basis": "all",
            "raw": "y",
        },
    )
    book = openpyxl.load_workbook(io.BytesIO(response.data))
    assert "Versorgung" in book.sheetnames and book.sheetnames == report.SHEETS
    rows = list(book["Versorgung"].iter_rows(min_row=5, values_only=True))
    flagged = {(r[0], r[9]) for r in rows if r[9]}
    assert ("Arnsberg", "Lücke") in flagged and ("Meschede", "Parallelstruktur") in flagged


def test_needs_assessment_rules(app, case, accounts, as_district):
    with app.app_context():
        town = db.session.scalar(select(Municipality).where(Municipality.name == "Arnsberg"))
        group = db.session.get(TargetGroup, case["groups"][0])
        db.session.add(NeedsAssessment(municipality=town, target_group=group, year=YEAR))
        with pytest.raises(IntegrityError):
            db.session.commit()  # one record per municipality, target group and year
        db.session.rollback()
        post_id = db.session.scalar(select(Post.id))
        partner_id = db.session.scalar(select(Partner.id))
    response = as_district.post(
        "/needs_assessment/new/",
        data={
            "municipality": case["towns"]["Brilon"],
            "target_group": case["groups"][0],
            "year": YEAR,
            "estimated_people": "12",
            "priority": "hoch",
            "responsible_post": post_id,
            "responsible_partner": partner_id,
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Bitte entweder eine Stelle oder einen Partner angeben." in html
    with app.app_context():
        assert (
            db.session.scalar(
                select(NeedsAssessment).where(
                    NeedsAssessment.municipality_id == case["towns"]["Brilon"]
                )
            )
            is None
        )
