"""Funding of posts (Förderung): grants per post and funding year, forwarded funds, vacancies.

The Kreis accounts to the Bezirksregierung for each funding year (Verwendungsnachweis):
which post was funded from which Baustein, for which months and FTE, with how much
money, under which grant notice, and how much of it went on to a town or a Träger.
Whether a post was filled is read from its dates and its vacancy periods.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice
from .municipality import Municipality
from .partner import Partner
from .post import BAUSTEINE, FTE_MAX, FTE_MIN, Post

# Only the three Bausteine are funded; "Eigenmittel" posts have no grant.
FUNDED_BAUSTEINE = [(code, label) for code, label in BAUSTEINE if code != "eigen"]
FUNDING_YEAR_MIN = 2000
FUNDING_YEAR_MAX = 2100
# Far above any KIM grant per post (Baustein 1: up to 57,000 EUR per post and year),
# and within Numeric(10, 2).
AMOUNT_MAX = Decimal("10000000")


def _post_municipality(cls: Any) -> Any:
    """The municipality of the row's post, as SQL (for the municipal scope)."""
    # Correlated to the funding or vacancy row only, also where the query joins post.
    return (
        select(Post.municipality_id)
        .where(Post.id == cls.post_id)
        .correlate_except(Post)
        .scalar_subquery()
    )


class PostFunding(db.Model):
    """The grant for one post in one funding year."""

    __tablename__ = "post_funding"
    __table_args__ = (
        UniqueConstraint("post_id", "year"),
        check_choice("baustein", FUNDED_BAUSTEINE),
        CheckConstraint(
            f"year BETWEEN {FUNDING_YEAR_MIN} AND {FUNDING_YEAR_MAX}", name="year_range"
        ),
        CheckConstraint(
            f"funded_fte >= {FTE_MIN} AND funded_fte <= {FTE_MAX}", name="funded_fte_range"
        ),
        CheckConstraint("funded_until >= funded_from", name="period_ordered"),
        CheckConstraint(
            f"grant_amount >= 0 AND grant_amount <= {AMOUNT_MAX}", name="grant_amount_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Records are kept five years: a post with funding cannot be deleted.
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="RESTRICT"), index=True)
    year: Mapped[int] = mapped_column(index=True)
    baustein: Mapped[str] = mapped_column(String(10))
    funded_fte: Mapped[Decimal] = mapped_column(Numeric(3, 2))
    # The funded period inside the year (both days included).
    funded_from: Mapped[date]
    funded_until: Mapped[date]
    # Granted for this post and year, in EUR.
    grant_amount: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal(0))
    notice_number: Mapped[str | None] = mapped_column(String(60))
    notice_date: Mapped[date | None]
    notes: Mapped[str | None] = mapped_column(Text)

    post: Mapped[Post] = relationship()
    forwards: Mapped[list[FundingForward]] = relationship(
        back_populates="funding",
        cascade="all, delete-orphan",
        order_by="FundingForward.id",
    )

    @hybrid_property
    def municipality_id(self) -> int | None:
        """The post's municipality: funding is scoped like its post."""
        return self.post.municipality_id if self.post is not None else None

    @municipality_id.inplace.expression
    @classmethod
    def _municipality_id_expression(cls) -> Any:
        return _post_municipality(cls)

    @property
    def forwarded(self) -> Decimal:
        """The sum forwarded to towns and Träger."""
        return sum((f.amount for f in self.forwards), Decimal(0))

    def __str__(self) -> str:
        return f"{self.post} {self.year}"


class FundingForward(db.Model):
    """Part of a grant passed on to a town or a Träger (Weiterleitung)."""

    __tablename__ = "funding_forward"
    __table_args__ = (
        # Exactly one recipient: a municipality or a partner organisation.
        CheckConstraint("(municipality_id IS NULL) <> (partner_id IS NULL)", name="one_recipient"),
        CheckConstraint(f"amount > 0 AND amount <= {AMOUNT_MAX}", name="amount_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    funding_id: Mapped[int] = mapped_column(
        ForeignKey("post_funding.id", ondelete="CASCADE"), index=True
    )
    municipality_id: Mapped[int | None] = mapped_column(
        ForeignKey("municipality.id", ondelete="RESTRICT"), index=True
    )
    partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partner.id", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    forwarded_on: Mapped[date | None]
    reference: Mapped[str | None] = mapped_column(String(100))

    funding: Mapped[PostFunding] = relationship(back_populates="forwards")
    municipality: Mapped[Municipality | None] = relationship()
    partner: Mapped[Partner | None] = relationship()

    @property
    def recipient(self) -> str:
        """The town or Träger the money went to."""
        return str(self.municipality or self.partner or "")

    def __str__(self) -> str:
        return f"{self.recipient}: {self.amount}"


class PostVacancy(db.Model):
    """A period in which a post was not filled (open-ended while it still is vacant)."""

    __tablename__ = "post_vacancy"
    __table_args__ = (
        CheckConstraint(
            "vacant_until IS NULL OR vacant_until >= vacant_from", name="dates_ordered"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id", ondelete="CASCADE"), index=True)
    vacant_from: Mapped[date]
    vacant_until: Mapped[date | None]
    note: Mapped[str | None] = mapped_column(String(200))

    post: Mapped[Post] = relationship()

    @hybrid_property
    def municipality_id(self) -> int | None:
        """The post's municipality: vacancies are scoped like their post."""
        return self.post.municipality_id if self.post is not None else None

    @municipality_id.inplace.expression
    @classmethod
    def _municipality_id_expression(cls) -> Any:
        return _post_municipality(cls)

    def __str__(self) -> str:
        return f"{self.post} ab {self.vacant_from:%d.%m.%Y}"
