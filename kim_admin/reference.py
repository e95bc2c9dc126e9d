"""Reference data of the Hochsauerlandkreis and the seed master data.

Sources: IT.NRW population as of 30.06.2023, the KIM project description of
the HSK (participating towns), and the starting set of indicators the district
agreed on. Loading is idempotent: existing rows are updated, none duplicated.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from models import Indicator, Municipality, TargetGroup, ValidationRule

from .extensions import db
from .monitoring.rules import SEED_RULES

# (name, AGS, population 30.06.2023, KIM participant)
MUNICIPALITIES = [
    ("Arnsberg", "05958004", 74300, True),
    ("Bestwig", "05958008", 10720, True),
    ("Brilon", "05958012", 25583, False),
    ("Eslohe (Sauerland)", "05958016", 8917, False),
    ("Hallenberg", "05958020", 4539, True),
    ("Marsberg", "05958024", 19718, False),
    ("Medebach", "05958028", 8157, True),
    ("Meschede", "05958032", 29957, True),
    ("Olsberg", "05958036", 14510, False),
    ("Schmallenberg", "05958040", 24951, True),
    ("Sundern (Sauerland)", "05958044", 27751, True),
    ("Winterberg", "05958048", 12674, False),
]

# (name, main legal area or None)
TARGET_GROUPS = [
    ("Geflüchtete mit Schutzstatus", "SGB II"),
    ("Asylsuchende (Gestattung)", "AsylbLG"),
    ("Geduldete", "AsylbLG"),
    ("Schutzsuchende aus der Ukraine (§ 24 AufenthG)", "SGB II"),
    ("EU-Zugewanderte", None),
    ("Drittstaatsangehörige (Arbeit/Familiennachzug)", "AufenthG/StAG"),
    ("Junge Erwachsene 18–27", "SGB VIII"),
    ("Frauen und Alleinerziehende", None),
    ("Familien mit Kindern", None),
    ("Menschen mit Behinderung", "SGB XII"),
    ("Spätaussiedler", None),
]

# (code, name, unit, field of action, kind, by target group, decimal places, description)
INDICATORS = [
    (
        "CM_NEU",
        "Neue Case-Management-Fälle",
        "Fälle",
        "3",
        "flow",
        True,
        0,
        "Im Quartal neu aufgenommene Fälle im Case Management.",
    ),
    (
        "CM_ABG",
        "Abgeschlossene Fälle",
        "Fälle",
        "3",
        "flow",
        True,
        0,
        "Im Quartal abgeschlossene Fälle im Case Management.",
    ),
    (
        "CM_AKT",
        "Aktive Fälle am Quartalsende",
        "Fälle",
        "3",
        "stock",
        True,
        0,
        "Bestand aktiver Fälle am letzten Tag des Quartals.",
    ),
    (
        "BER_KONT",
        "Beratungskontakte",
        "Kontakte",
        "3",
        "flow",
        False,
        0,
        "Persönliche, telefonische und digitale Beratungskontakte im Quartal.",
    ),
    (
        "VERM",
        "Vermittlungen an Kooperationspartner",
        "Vermittlungen",
        "3",
        "flow",
        False,
        0,
        "Vermittlungen an Regeldienste und Kooperationspartner im Quartal.",
    ),
    (
        "FALLKONF",
        "Durchgeführte Fallkonferenzen",
        "Konferenzen",
        "3",
        "flow",
        False,
        0,
        "Rechtskreisübergreifende Fallkonferenzen im Quartal.",
    ),
    (
        "VZAE_BES",
        "Besetzte Vollzeitäquivalente am Quartalsende",
        "VZÄ",
        "2",
        "stock",
        False,
        2,
        "Besetzte KIM-Stellen in Vollzeitäquivalenten am letzten Tag des Quartals.",
    ),
]


def load_reference_data() -> dict[str, int]:
    """Insert or update municipalities, target groups and indicators.

    Also the seed plausibility rules. Returns how many rows of each kind were created.
    """
    created = {"municipalities": 0, "target_groups": 0, "indicators": 0, "rules": 0}

    for name, ags, population, participant in MUNICIPALITIES:
        row = db.session.scalar(select(Municipality).where(Municipality.ags == ags))
        if row is None:
            row = Municipality(ags=ags)
            db.session.add(row)
            created["municipalities"] += 1
            # KIM participation is the district's decision once the row exists.
            row.kim_participant = participant
        row.name = name
        row.population = population

    for order, (name, legal_area) in enumerate(TARGET_GROUPS, start=1):
        if db.session.scalar(select(TargetGroup).where(TargetGroup.name == name)) is None:
            db.session.add(TargetGroup(name=name, legal_area=legal_area, sort_order=order))
            created["target_groups"] += 1

    for order, (code, name, unit, field, kind, by_group, places, text) in enumerate(
        INDICATORS, start=1
    ):
        if db.session.scalar(select(Indicator).where(Indicator.code == code)) is None:
            db.session.add(
                Indicator(
                    code=code,
                    name=name,
                    unit=unit,
                    field_of_action=field,
                    kind=kind,
                    by_target_group=by_group,
                    decimal_places=places,
                    description=text,
                    min_value=Decimal(0),
                    max_value=Decimal(100) if code == "VZAE_BES" else None,
                    sort_order=order * 10,
                )
            )
            created["indicators"] += 1

    for name, left, op, right, severity, message in SEED_RULES:
        if db.session.scalar(select(ValidationRule).where(ValidationRule.name == name)) is None:
            db.session.add(
                ValidationRule(
                    name=name,
                    left_side=left,
                    operator=op,
                    right_side=right,
                    severity=severity,
                    message=message,
                )
            )
            created["rules"] += 1

    db.session.commit()
    return created
