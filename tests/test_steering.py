"""The steering group's workspace: meetings, decisions, measures, structural problems.

The access matrix (every view × role × own/foreign) is in ``test_access.py`` and the
rights as DOMAIN.md §2 words them in ``test_policy.py``; these tests check what
the pages do with the rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import select

from kim_admin.extensions import db
from models import Measure, StructuralProblem

from . import factories
from .support import Session


@dataclass
class World:
    arnsberg: int
    meschede: int
    group: int
    period: int
    gap_measure: int
    meschede_measure: int
    done_measure: int
    meschede_post: int


@pytest.fixture
def world(app: Flask, accounts) -> World:
    """Arnsberg has a need nobody serves (a gap) and an open measure on it."""
    with app.app_context():
        group = factories.group(0)
        period = factories.period(2026, 1)
        factories.needs("Arnsberg", group, 2026, estimated_people=40)
        meschede_post = factories.post("Meschede", "MESCHEDE-Stelle")
        gap = factories.measure(
            "Kinderbetreuung im Sprachkurs",
            municipalities=["Arnsberg"],
            gap_municipality=factories.town("Arnsberg"),
            gap_target_group=group,
            due_on=date(2026, 9, 30),
            status="in_arbeit",
            responsible_post=meschede_post,
        )
        other = factories.measure("MESCHEDE-Maßnahme", municipalities=["Meschede"])
        done = factories.measure(
            "Erledigte Maßnahme",
            municipalities=["Arnsberg"],
            gap_municipality=factories.town("Arnsberg"),
            gap_target_group=group,
            status="erledigt",
        )
        world = World(
            arnsberg=factories.town("Arnsberg").id,
            meschede=factories.town("Meschede").id,
            group=group.id,
            period=period.id,
            gap_measure=gap.id,
            meschede_measure=other.id,
            done_measure=done.id,
            meschede_post=meschede_post.id,
        )
        db.session.commit()
        return world


def table_rows(html: str) -> list[list[str]]:
    """The text of each body row's cells."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell.split(">", 1)[1]).split())
            for cell in row.split("<td")[1:]
        ]
        for row in body.split("</tr>")[:-1]
    ]


def text(session: Session, path: str) -> str:
    response = session.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def test_coverage_page_shows_open_measures_on_their_cells(world, as_steering):
    page = text(as_steering, "/versorgung/?year=2026&flag=gap")
    assert "Kinderbetreuung im Sprachkurs" in page
    assert "in Arbeit" in page and "30.09.2026" in page
    assert "Erledigte Maßnahme" not in page  # only open measures


def test_municipal_user_reads_only_measures_naming_their_town(world, as_arnsberg):
    listing = text(as_arnsberg, "/measure/")
    assert "Kinderbetreuung im Sprachkurs" in listing
    assert "MESCHEDE-Maßnahme" not in listing
    details = text(as_arnsberg, f"/measure/details/?id={world.gap_measure}")
    # The responsible post is Meschede's: the town learns only that it is not its own.
    assert "MESCHEDE-Stelle" not in details and "Meschede" not in details
    assert "eine Stelle außerhalb der eigenen Kommune" in details
    foreign = as_arnsberg.get(f"/measure/details/?id={world.meschede_measure}")
    assert foreign.status_code in (302, 404)
    assert as_arnsberg.get("/measure/new/").status_code == 403
    coverage = text(as_arnsberg, "/versorgung/?year=2026")
    assert "Kinderbetreuung im Sprachkurs" in coverage


def test_measure_on_a_gap_concerns_the_gaps_town(app, world, as_steering):
    response = as_steering.post(
        "/measure/new/",
        {
            "title": "Sprechstunde vor Ort",
            "status": "geplant",
            "gap_municipality": world.meschede,
            "gap_target_group": world.group,
        },
    )
    assert response.status_code == 302
    with app.app_context():
        created = db.session.scalar(select(Measure).where(Measure.title == "Sprechstunde vor Ort"))
        assert [t.id for t in created.municipalities] == [world.meschede]


def test_measure_needs_a_whole_cell_and_one_responsible(app, world, as_steering):
    with app.app_context():
        partner = factories.partner("Caritas", "wohlfahrtsverband")
        db.session.commit()
        partner_id = partner.id
    half = as_steering.post(
        "/measure/new/",
        {"title": "Halbe Zelle", "status": "geplant", "gap_municipality": world.arnsberg},
    )
    assert "bitte Kommune und Zielgruppe angeben" in half.get_data(as_text=True)
    both = as_steering.post(
        "/measure/new/",
        {
            "title": "Zwei Verantwortliche",
            "status": "geplant",
            "responsible_post": world.meschede_post,
            "responsible_partner": partner_id,
        },
    )
    if both.status_code == 302:
        both = as_steering.get(both.headers["Location"])
    assert "entweder eine Stelle oder einen Partner" in both.get_data(as_text=True)
    with app.app_context():
        titles = set(db.session.scalars(select(Measure.title)))
    assert "Halbe Zelle" not in titles and "Zwei Verantwortliche" not in titles


def test_municipal_user_reports_a_problem_for_their_own_town_only(app, world, as_arnsberg):
    response = as_arnsberg.post(
        "/structural_problem/new/",
        {
            # A crafted form naming another town: not a valid choice.
            "municipality": world.meschede,
            "period": world.period,
            "category": "kinderbetreuung",
            "frequency": "haeufig",
            "description": "Fremde Kommune",
        },
    )
    assert response.status_code == 200
    saved = as_arnsberg.post(
        "/structural_problem/new/",
        {
            "municipality": world.arnsberg,
            "period": world.period,
            "category": "kinderbetreuung",
            "frequency": "haeufig",
            "description": "Keine Kinderbetreuung während der Sprachkurse",
        },
    )
    assert saved.status_code == 302
    with app.app_context():
        rows = db.session.scalars(select(StructuralProblem)).all()
        assert [(p.municipality_id, p.description) for p in rows] == [
            (world.arnsberg, "Keine Kinderbetreuung während der Sprachkurse")
        ]


def test_steering_group_sees_problems_aggregated_with_linked_measures(app, world, as_steering):
    with app.app_context():
        q2 = factories.period(2026, 2)
        period = db.session.get(type(q2), world.period)
        group = factories.group(0)
        reports = [
            factories.structural_problem("Arnsberg", period, target_group=group),
            factories.structural_problem("Meschede", q2, target_group=group, frequency="staendig"),
            factories.structural_problem(
                "Sundern (Sauerland)", q2, target_group=group, frequency="selten"
            ),
            factories.structural_problem("Arnsberg", q2, "wohnen", frequency="selten"),
        ]
        measure = db.session.get(Measure, world.gap_measure)
        measure.problems = reports[:1]
        db.session.commit()
    page = text(as_steering, "/probleme/")
    rows = {r[0]: r for r in table_rows(page)}
    # 3 reports from 3 towns in 2 quarters; the most frequent is "ständig".
    childcare = rows["Kinderbetreuung"]
    assert childcare[2:7] == [
        "3",
        "3",
        "2",
        "Q1/2026 – Q2/2026",
        "ständig (wöchentlich oder öfter)",
    ]
    assert "Kinderbetreuung im Sprachkurs (in Arbeit)" in childcare[7]
    assert rows["Wohnen"][1:3] == ["alle Zielgruppen", "1"]


def test_municipal_user_gets_no_overview_across_towns(world, as_arnsberg):
    assert as_arnsberg.get("/probleme/").status_code == 403


def test_meeting_with_decisions_is_kept(app, world, as_steering):
    with app.app_context():
        meeting = factories.meeting("Kreishaus", municipalities=["Arnsberg"])
        factories.decision(meeting, "Sprachkurse mit Kinderbetreuung planen")
        db.session.commit()
        meeting_id = meeting.id
    details = text(as_steering, f"/meeting/details/?id={meeting_id}")
    assert "Kreishaus" in details and "Sprachkurse mit Kinderbetreuung planen" in details
    response = as_steering.post("/meeting/delete/", {"id": meeting_id})
    assert response.status_code == 302
    page = as_steering.get(response.headers["Location"]).get_data(as_text=True)
    assert "alert-danger" in page
