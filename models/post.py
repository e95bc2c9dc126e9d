"""Posts (Stellen) funded through KIM or own funds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice, link_table
from .municipality import Municipality
from .partner import Partner
from .target_group import TargetGroup

EMPLOYER_TYPES = [
    ("kreis", "Kreis"),
    ("kommune", "Kommune"),
    ("partner", "Träger (Kooperationspartner)"),
]
POST_FUNCTIONS = [
    ("koordination", "Koordination"),
    ("verwaltungsassistenz", "Verwaltungsassistenz"),
    ("case_management", "Case Management"),
    ("auslaenderbehoerde", "Ausländerbehörde"),
    ("einbuergerungsbehoerde", "Einbürgerungsbehörde"),
    ("sonstige", "Sonstige"),
]
BAUSTEINE = [
    ("1", "Baustein 1 – Strategische Steuerung"),
    ("2", "Baustein 2 – Case Management"),
    ("3", "Baustein 3 – Ausländer-/Einbürgerungsbehörde"),
    ("eigen", "Eigenmittel"),
]
POST_STATUSES = [
    ("besetzt", "besetzt"),
    ("vakant", "vakant"),
    ("ausgeschrieben", "ausgeschrieben"),
]
FTE_MIN = Decimal("0.05")
FTE_MAX = Decimal("1.00")

post_target_group = link_table(db.metadata, "post", "target_group")


class Post(db.Model):
    """A KIM post: who employs it, what it does, how it is funded and filled."""

    __tablename__ = "post"
    __table_args__ = (
        check_choice("employer_type", EMPLOYER_TYPES),
        check_choice("function", POST_FUNCTIONS),
        check_choice("baustein", BAUSTEINE),
        check_choice("status", POST_STATUSES),
        CheckConstraint(f"fte >= {FTE_MIN} AND fte <= {FTE_MAX}", name="fte_range"),
        CheckConstraint(
            "valid_until IS NULL OR valid_from IS NULL OR valid_until >= valid_from",
            name="dates_ordered",
        ),
        # A partner organisation as employer needs to be named, and only then.
        CheckConstraint(
            "(employer_type = 'partner') = (employer_partner_id IS NOT NULL)",
            name="employer_partner_named",
        ),
        CheckConstraint(
            "employer_type <> 'kommune' OR municipality_id IS NOT NULL",
            name="municipal_employer_has_municipality",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    # No municipality means the post sits at Kreis level.
    municipality_id: Mapped[int | None] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    employer_type: Mapped[str] = mapped_column(String(20), default="kreis")
    employer_partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partner.id", ondelete="RESTRICT"), index=True
    )
    function: Mapped[str] = mapped_column(String(30))
    baustein: Mapped[str] = mapped_column(String(10))
    fte: Mapped[Decimal] = mapped_column(Numeric(3, 2))
    status: Mapped[str] = mapped_column(String(20), default="vakant")
    valid_from: Mapped[date | None]
    valid_until: Mapped[date | None]

    municipality: Mapped[Municipality | None] = relationship()
    employer_partner: Mapped[Partner | None] = relationship()
    target_groups: Mapped[list[TargetGroup]] = relationship(
        secondary=post_target_group, order_by=TargetGroup.sort_order
    )

    def __str__(self) -> str:
        return self.title
