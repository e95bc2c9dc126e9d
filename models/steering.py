"""The steering group's workspace (Handlungsfeld 4): meetings, decisions, measures,
structural problems, the narrative of the report for politics and its stored PDFs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice, link_table, utcnow
from .municipality import Municipality
from .partner import Partner
from .post import Post
from .reporting import ReportingPeriod
from .target_group import TargetGroup
from .user import User

MEASURE_STATUSES = [
    ("geplant", "geplant"),
    ("in_arbeit", "in Arbeit"),
    ("erledigt", "erledigt"),
    ("verworfen", "verworfen"),
]
#: Measures still to be done: the coverage page shows these on their cells.
OPEN_MEASURE_STATUSES = ("geplant", "in_arbeit")
PROBLEM_CATEGORIES = [
    ("kinderbetreuung", "Kinderbetreuung"),
    ("sprache", "Sprachkurse und Sprachmittlung"),
    ("wohnen", "Wohnen"),
    ("arbeit", "Arbeit und Ausbildung"),
    ("schule", "Schule und Kita"),
    ("gesundheit", "Gesundheit"),
    ("mobilitaet", "Mobilität"),
    ("verfahren", "Behörden und Verfahren"),
    ("beratung", "Beratungsangebote"),
    ("sonstiges", "Sonstiges"),
]
# Ordered from rare to constant; no counts of cases (nothing that could point at a person).
PROBLEM_FREQUENCIES = [
    ("selten", "selten (einzelne Fälle im Quartal)"),
    ("gelegentlich", "gelegentlich (mehrmals im Quartal)"),
    ("haeufig", "häufig (etwa monatlich)"),
    ("staendig", "ständig (wöchentlich oder öfter)"),
]
REPORT_SECTIONS = [
    ("einleitung", "Einleitung"),
    ("entwicklung", "Entwicklung je Handlungsfeld"),
    ("massnahmen", "Maßnahmen"),
    ("ausblick", "Ausblick"),
]
#: Longest narrative section of the report for politics (characters).
SECTION_MAX = 20_000

meeting_municipality = link_table(db.metadata, "meeting", "municipality")
meeting_partner = link_table(db.metadata, "meeting", "partner")
meeting_post = link_table(db.metadata, "meeting", "post")
measure_municipality = link_table(db.metadata, "measure", "municipality")
measure_target_group = link_table(db.metadata, "measure", "target_group")
measure_structural_problem = link_table(db.metadata, "measure", "structural_problem")


class Meeting(db.Model):
    """A meeting of the steering group: when, where, who, agenda and minutes (text only)."""

    __tablename__ = "meeting"

    id: Mapped[int] = mapped_column(primary_key=True)
    held_on: Mapped[date] = mapped_column(index=True)
    place: Mapped[str] = mapped_column(String(200))
    agenda: Mapped[str | None] = mapped_column(Text)
    minutes: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    municipalities: Mapped[list[Municipality]] = relationship(
        secondary=meeting_municipality, order_by=Municipality.name
    )
    partners: Mapped[list[Partner]] = relationship(secondary=meeting_partner, order_by=Partner.name)
    posts: Mapped[list[Post]] = relationship(secondary=meeting_post, order_by=Post.title)
    decisions: Mapped[list[Decision]] = relationship(
        back_populates="meeting", order_by="Decision.id"
    )

    def __str__(self) -> str:
        return f"Sitzung am {self.held_on:%d.%m.%Y}"


class Decision(db.Model):
    """A decision (Beschluss) taken in a meeting."""

    __tablename__ = "decision"

    id: Mapped[int] = mapped_column(primary_key=True)
    # A meeting with decisions is not deleted by accident: remove its decisions first.
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meeting.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)

    meeting: Mapped[Meeting] = relationship(back_populates="decisions")

    def __str__(self) -> str:
        return self.title


class StructuralProblem(db.Model):
    """A recurring obstacle case managers meet, reported by a municipality per quarter."""

    __tablename__ = "structural_problem"
    __table_args__ = (
        check_choice("category", PROBLEM_CATEGORIES),
        check_choice("frequency", PROBLEM_FREQUENCIES),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    period_id: Mapped[int] = mapped_column(
        ForeignKey("reporting_period.id", ondelete="RESTRICT"), index=True
    )
    category: Mapped[str] = mapped_column(String(20))
    # None: the problem concerns every target group.
    target_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("target_group.id", ondelete="RESTRICT"), index=True
    )
    frequency: Mapped[str] = mapped_column(String(20), default="gelegentlich")
    description: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    municipality: Mapped[Municipality] = relationship()
    period: Mapped[ReportingPeriod] = relationship()
    target_group: Mapped[TargetGroup | None] = relationship()

    def __str__(self) -> str:
        category = dict(PROBLEM_CATEGORIES).get(self.category, self.category)
        group = self.target_group or "alle Zielgruppen"
        return f"{category} – {group} ({self.municipality}, {self.period})"


class Measure(db.Model):
    """A measure (Maßnahme) of the steering group, optionally closing a coverage gap."""

    __tablename__ = "measure"
    __table_args__ = (
        check_choice("status", MEASURE_STATUSES),
        CheckConstraint(
            "responsible_post_id IS NULL OR responsible_partner_id IS NULL",
            name="one_responsible",
        ),
        # A cell of the coverage matrix is a municipality and a target group, both or none.
        CheckConstraint(
            "(gap_municipality_id IS NULL) = (gap_target_group_id IS NULL)",
            name="gap_cell_complete",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    responsible_post_id: Mapped[int | None] = mapped_column(
        ForeignKey("post.id", ondelete="SET NULL"), index=True
    )
    responsible_partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partner.id", ondelete="SET NULL"), index=True
    )
    due_on: Mapped[date | None]
    status: Mapped[str] = mapped_column(String(20), default="geplant", index=True)
    decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("decision.id", ondelete="SET NULL"), index=True
    )
    gap_municipality_id: Mapped[int | None] = mapped_column(
        ForeignKey("municipality.id", ondelete="CASCADE"), index=True
    )
    gap_target_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("target_group.id", ondelete="CASCADE")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    responsible_post: Mapped[Post | None] = relationship()
    responsible_partner: Mapped[Partner | None] = relationship()
    decision: Mapped[Decision | None] = relationship()
    gap_municipality: Mapped[Municipality | None] = relationship(foreign_keys=[gap_municipality_id])
    gap_target_group: Mapped[TargetGroup | None] = relationship(foreign_keys=[gap_target_group_id])
    municipalities: Mapped[list[Municipality]] = relationship(
        secondary=measure_municipality, order_by=Municipality.name
    )
    target_groups: Mapped[list[TargetGroup]] = relationship(
        secondary=measure_target_group, order_by=TargetGroup.sort_order
    )
    problems: Mapped[list[StructuralProblem]] = relationship(
        secondary=measure_structural_problem, order_by=StructuralProblem.id
    )

    @property
    def responsible(self) -> Post | Partner | None:
        """The post or partner in charge, if any."""
        return self.responsible_post or self.responsible_partner

    @property
    def status_label(self) -> str:
        return dict(MEASURE_STATUSES).get(self.status, self.status)

    def __str__(self) -> str:
        return self.title


class ReportText(db.Model):
    """The current text of one narrative section of the report for politics."""

    __tablename__ = "report_text"
    __table_args__ = (check_choice("section", REPORT_SECTIONS), UniqueConstraint("section"))

    id: Mapped[int] = mapped_column(primary_key=True)
    section: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    def __str__(self) -> str:
        return dict(REPORT_SECTIONS).get(self.section, self.section)


class ReportDocument(db.Model):
    """One generated PDF of the report for politics, kept unchanged with what made it.

    The file is written to the audit trail as an explicit event (its parameters,
    size and checksum), not as a row snapshot: the trail holds no binary data.
    """

    __tablename__ = "report_document"
    __audit__ = False
    __table_args__ = (UniqueConstraint("version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(300))
    #: The options the figures were read with (quarters, municipalities, threshold ...).
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The narrative sections as they were when the PDF was made.
    texts: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    # Loaded only for a download, never with a list of versions.
    pdf: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)

    created_by: Mapped[User | None] = relationship()

    @property
    def filename(self) -> str:
        return f"KIM-Evaluationsbericht_v{self.version}_{self.created_at:%Y-%m-%d}.pdf"

    def __str__(self) -> str:
        return f"Version {self.version}"
