"""Needs assessment (Bedarfserhebung, Handlungsfeld 1)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice, utcnow
from .municipality import Municipality
from .partner import Partner
from .post import Post
from .target_group import TargetGroup

PRIORITIES = [("hoch", "hoch"), ("mittel", "mittel"), ("niedrig", "niedrig")]


class NeedsAssessment(db.Model):
    """The estimated need of one target group in one municipality for one year."""

    __tablename__ = "needs_assessment"
    __table_args__ = (
        UniqueConstraint("municipality_id", "target_group_id", "year"),
        check_choice("priority", PRIORITIES),
        CheckConstraint("year BETWEEN 2000 AND 2100", name="year_range"),
        CheckConstraint(
            "estimated_people IS NULL OR estimated_people >= 0", name="people_non_negative"
        ),
        # One responsible: a post or a partner, not both.
        CheckConstraint(
            "responsible_post_id IS NULL OR responsible_partner_id IS NULL",
            name="one_responsible",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    target_group_id: Mapped[int] = mapped_column(
        ForeignKey("target_group.id", ondelete="RESTRICT"), index=True
    )
    year: Mapped[int]
    # An estimate of how many people of the group live there and need support.
    estimated_people: Mapped[int | None]
    priority: Mapped[str] = mapped_column(String(10), default="mittel")
    responsible_post_id: Mapped[int | None] = mapped_column(
        ForeignKey("post.id", ondelete="SET NULL")
    )
    responsible_partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partner.id", ondelete="SET NULL")
    )
    notes: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    municipality: Mapped[Municipality] = relationship()
    target_group: Mapped[TargetGroup] = relationship()
    responsible_post: Mapped[Post | None] = relationship()
    responsible_partner: Mapped[Partner | None] = relationship()

    @property
    def responsible(self) -> Post | Partner | None:
        """The post or partner in charge, if any."""
        return self.responsible_post or self.responsible_partner

    def __str__(self) -> str:
        return f"{self.municipality} – {self.target_group} ({self.year})"
