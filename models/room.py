"""Rooms (Räume) where counselling takes place."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice
from .municipality import Municipality

ROOM_KINDS = [
    ("beratungsraum", "Beratungsraum"),
    ("buero", "Büro"),
    ("gruppenraum", "Gruppenraum"),
    ("externe_sprechstunde", "externe Sprechstunde"),
]


class Room(db.Model):
    """A room of one municipality used for counselling."""

    __tablename__ = "room"
    __table_args__ = (
        check_choice("kind", ROOM_KINDS),
        CheckConstraint("seats IS NULL OR seats >= 0", name="seats_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(160))
    address: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(30), default="beratungsraum")
    seats: Mapped[int | None]
    barrier_free: Mapped[bool] = mapped_column(default=False)
    # Free text such as "Di 9-12"; opening hours vary too much for a schema.
    availability: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)

    municipality: Mapped[Municipality] = relationship()

    def __str__(self) -> str:
        return f"{self.name} ({self.municipality})" if self.municipality else self.name
