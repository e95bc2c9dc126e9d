"""Cooperation partners (Kooperationspartner) and whom they serve."""

from __future__ import annotations

from datetime import date

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kim_admin.extensions import db

from ._common import check_choice, link_table
from .municipality import Municipality
from .target_group import TargetGroup

PARTNER_KINDS = [
    ("jobcenter", "Jobcenter HSK"),
    ("agentur_fuer_arbeit", "Agentur für Arbeit"),
    ("auslaenderbehoerde", "Ausländerbehörde"),
    ("einbuergerungsbehoerde", "Einbürgerungsbehörde"),
    ("jugendamt", "Jugendamt"),
    ("sozialamt", "Sozialamt"),
    ("schulamt", "Schulamt"),
    ("mbe", "Migrationsberatung für Erwachsene (MBE, 27+)"),
    ("jmd", "Jugendmigrationsdienst (JMD, 12–27)"),
    ("integrationsagentur", "Integrationsagentur"),
    ("wohlfahrtsverband", "Wohlfahrtsverband"),
    ("vhs", "VHS/Integrationskursträger"),
    ("mso", "Migrantenselbstorganisation"),
    ("ehrenamt", "Ehrenamt/Flüchtlingshilfe"),
    ("gesundheitsamt", "Gesundheitsamt"),
    ("wohnungswirtschaft", "Wohnungswirtschaft"),
    ("sonstige", "Sonstige"),
]

partner_municipality = link_table(db.metadata, "partner", "municipality")

partner_target_group = link_table(db.metadata, "partner", "target_group")


class Partner(db.Model):
    """An organisation the KIM cooperates with."""

    __tablename__ = "partner"
    __table_args__ = (check_choice("kind", PARTNER_KINDS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    contact_person: Mapped[str | None] = mapped_column(String(160))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(60))
    cooperation_since: Mapped[date | None]
    written_agreement: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)

    # No municipality means the partner serves the whole district.
    municipalities: Mapped[list[Municipality]] = relationship(
        secondary=partner_municipality, order_by=Municipality.name
    )
    target_groups: Mapped[list[TargetGroup]] = relationship(
        secondary=partner_target_group, order_by=TargetGroup.sort_order
    )

    def __str__(self) -> str:
        return self.name
