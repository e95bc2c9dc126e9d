"""The funding year (Förderung): funded against filled, granted against forwarded.

For each grant of a funding year (:class:`models.PostFunding`), grouped by Baustein:

**Months funded** — the funded period (``funded_from`` to ``funded_until``, cut
to the year) in months, **pro rata by days**: each calendar month counts with
the share of its days that lie in the period (15.03.–31.12. is 17/31 + 9 =
9.55 months; a whole year is 12).

**Months filled** — the same arithmetic over the days of the funded period on
which the post existed (its ``valid_from``/``valid_until``) and was not vacant
(its vacancy periods, :class:`models.PostVacancy`). Days outside the funded
period do not count: the statement is about the money of this grant. The
post's *status* describes today only and is not read for past months; a post
marked vacant without an open vacancy period gets a hint instead.

**FTE** — funded: the grant's ``funded_fte``. Filled: the post's FTE
(``Post.fte``, part-time posts with their share) averaged over the funded
period, ``fte × months filled / months funded``. FTE-months (VZÄ-Monate) are
FTE × months, funded and filled, and are what the totals compare.

**Amounts** — granted (``grant_amount``) against the sum forwarded to towns and
Träger (:class:`models.FundingForward`), and what the Kreis keeps.

Months and FTE are rounded to two decimals for display and export, after
summing exact fractions. Everything is read with four queries, whatever the
number of posts (a few hundred at most), and scoped like the posts: a
municipal user sees only their own municipality's posts.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from models import (
    BAUSTEINE,
    EMPLOYER_TYPES,
    POST_FUNCTIONS,
    FundingForward,
    Post,
    PostFunding,
    PostVacancy,
)

from . import exports
from .extensions import db
from .permissions import apply_scope

CENT = Decimal("0.01")
FILLED = "besetzt"


def round2(value: Fraction | Decimal) -> Decimal:
    """Two decimals, half up (as the amounts in a Verwendungsnachweis)."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --- month arithmetic -------------------------------------------------------------


def days_between(first: date | None, last: date | None, year: int) -> set[date]:
    """The days from ``first`` to ``last`` (both included; none = open) inside ``year``."""
    start = max(first or date(year, 1, 1), date(year, 1, 1))
    end = min(last or date(year, 12, 31), date(year, 12, 31))
    return {start + timedelta(days=n) for n in range((end - start).days + 1)}


def months(days: set[date], year: int) -> Fraction:
    """``days`` of ``year`` in months, each month pro rata: covered days / days in month."""
    per_month: dict[int, int] = defaultdict(int)
    for day in days:
        if day.year == year:
            per_month[day.month] += 1
    return sum(
        (Fraction(n, calendar.monthrange(year, month)[1]) for month, n in per_month.items()),
        Fraction(0),
    )


def filled_days(
    post: Post, vacancies: list[PostVacancy], funded: set[date], year: int
) -> set[date]:
    """The funded days on which ``post`` existed and was not vacant."""
    days = funded & days_between(post.valid_from, post.valid_until, year)
    for vacancy in vacancies:
        days -= days_between(vacancy.vacant_from, vacancy.vacant_until, year)
    return days


# --- the funding year ---------------------------------------------------------------


@dataclass
class FundingRow:
    """One grant of the year, with what was funded and what was filled."""

    funding: PostFunding
    months_funded: Fraction
    months_filled: Fraction
    fte_months_funded: Fraction
    fte_months_filled: Fraction
    forwarded: Decimal
    hints: list[str] = field(default_factory=list)

    @property
    def post(self) -> Post:
        return self.funding.post

    @property
    def granted(self) -> Decimal:
        return self.funding.grant_amount

    @property
    def remaining(self) -> Decimal:
        """What the Kreis keeps of the grant (granted − forwarded)."""
        return self.granted - self.forwarded

    @property
    def fte_funded(self) -> Decimal:
        return self.funding.funded_fte

    @property
    def fte_filled(self) -> Fraction:
        """The post's FTE averaged over the funded period."""
        if not self.months_funded:
            return Fraction(0)
        return self.fte_months_filled / self.months_funded


@dataclass
class Totals:
    """Sums over rows (a Baustein or the whole year)."""

    label: str
    rows: list[FundingRow] = field(default_factory=list)

    def _sum(self, name: str) -> Any:
        return sum((getattr(r, name) for r in self.rows), Fraction(0))

    @property
    def months_funded(self) -> Fraction:
        return self._sum("months_funded")

    @property
    def months_filled(self) -> Fraction:
        return self._sum("months_filled")

    @property
    def fte_months_funded(self) -> Fraction:
        return self._sum("fte_months_funded")

    @property
    def fte_months_filled(self) -> Fraction:
        return self._sum("fte_months_filled")

    @property
    def fte_funded(self) -> Decimal:
        return sum((r.fte_funded for r in self.rows), Decimal(0))

    @property
    def fte_filled(self) -> Fraction:
        return self._sum("fte_filled")

    @property
    def granted(self) -> Decimal:
        return sum((r.granted for r in self.rows), Decimal(0))

    @property
    def forwarded(self) -> Decimal:
        return sum((r.forwarded for r in self.rows), Decimal(0))

    @property
    def remaining(self) -> Decimal:
        return self.granted - self.forwarded


@dataclass
class FundingYear:
    """Every grant of ``year`` the user may see, by Baustein, with totals."""

    year: int
    bausteine: list[Totals]
    total: Totals

    @property
    def rows(self) -> list[FundingRow]:
        return self.total.rows


def fundings_query(user: Any) -> Any:
    """``select(PostFunding)`` limited to the posts ``user`` may reach."""
    return apply_scope(select(PostFunding), PostFunding, "post_funding", user)


def years(user: Any) -> list[int]:
    """The funding years with grants the user may see, the latest first."""
    query = fundings_query(user).with_only_columns(PostFunding.year).distinct()
    return sorted(db.session.scalars(query), reverse=True)


def default_year(user: Any, today: date | None = None) -> int:
    """The latest funding year up to this year, else the current year."""
    this_year = (today or date.today()).year
    return next((y for y in years(user) if y <= this_year), this_year)


def funding_year(year: int, user: Any, today: date | None = None) -> FundingYear:
    """The funding year ``year`` as ``user`` may see it (four queries)."""
    today = today or date.today()
    fundings = db.session.scalars(
        fundings_query(user)
        .where(PostFunding.year == year)
        .join(Post, Post.id == PostFunding.post_id)
        .options(
            selectinload(PostFunding.post).selectinload(Post.municipality),
            selectinload(PostFunding.post).selectinload(Post.employer_partner),
            selectinload(PostFunding.forwards).selectinload(FundingForward.municipality),
            selectinload(PostFunding.forwards).selectinload(FundingForward.partner),
        )
        .order_by(PostFunding.baustein, Post.title, PostFunding.id)
    ).all()
    vacancies: dict[int, list[PostVacancy]] = defaultdict(list)
    if fundings:
        for vacancy in db.session.scalars(
            select(PostVacancy)
            .where(
                PostVacancy.post_id.in_({f.post_id for f in fundings}),
                PostVacancy.vacant_from <= date(year, 12, 31),
                func.coalesce(PostVacancy.vacant_until, date(year, 12, 31)) >= date(year, 1, 1),
            )
            .order_by(PostVacancy.vacant_from)
        ):
            vacancies[vacancy.post_id].append(vacancy)

    labels = dict(BAUSTEINE)
    by_baustein: dict[str, Totals] = {}
    total = Totals("Gesamt")
    for funding in fundings:
        row = _row(funding, vacancies[funding.post_id], year, today)
        group = by_baustein.setdefault(
            funding.baustein, Totals(labels.get(funding.baustein, funding.baustein))
        )
        group.rows.append(row)
        total.rows.append(row)
    return FundingYear(year, list(by_baustein.values()), total)


def _row(funding: PostFunding, vacancies: list[PostVacancy], year: int, today: date) -> FundingRow:
    post = funding.post
    funded = days_between(funding.funded_from, funding.funded_until, year)
    filled = filled_days(post, vacancies, funded, year)
    months_funded, months_filled = months(funded, year), months(filled, year)
    forwarded = funding.forwarded
    row = FundingRow(
        funding,
        months_funded,
        months_filled,
        Fraction(funding.funded_fte) * months_funded,
        Fraction(post.fte) * months_filled,
        forwarded,
    )
    if forwarded > funding.grant_amount:
        row.hints.append("Mehr weitergeleitet als bewilligt")
    if funding.funded_from.year != year or funding.funded_until.year != year:
        row.hints.append(f"Förderzeitraum reicht über {year} hinaus; gezählt wird nur {year}")
    if post.fte > funding.funded_fte:
        row.hints.append("Stellenanteil größer als gefördert")
    open_vacancy = any(
        v.vacant_from <= today and (v.vacant_until is None or v.vacant_until >= today)
        for v in vacancies
    )
    if year == today.year and post.status != FILLED and not open_vacancy:
        row.hints.append("Stelle ist nicht besetzt, aber kein Vakanzzeitraum erfasst")
    return row


# --- the Zahlenmäßiger Nachweis (xlsx) ---------------------------------------------

MONTH_RULE = (
    "Monate anteilig nach Tagen: jeder Kalendermonat zählt mit dem Anteil seiner Tage im "
    "Förderzeitraum (gefördert) bzw. an denen die Stelle im Förderzeitraum bestand und nicht "
    "vakant war (besetzt). VZÄ besetzt = Stellenanteil × Monate besetzt / Monate gefördert."
)


def employer(post: Post) -> str:
    """Kreis, Kommune or the Träger's name."""
    if post.employer_type == "partner" and post.employer_partner is not None:
        return post.employer_partner.name
    return dict(EMPLOYER_TYPES).get(post.employer_type, post.employer_type)


def _columns() -> list[exports.Column]:
    money, two = exports.TWO_DECIMALS, exports.TWO_DECIMALS
    functions = dict(POST_FUNCTIONS)
    return [
        exports.Column("Stelle", lambda r: r.post.title, width=32),
        exports.Column(
            "Kommune", lambda r: r.post.municipality.name if r.post.municipality else "Kreisebene"
        ),
        exports.Column("Anstellungsträger", lambda r: employer(r.post), width=24),
        exports.Column("Funktion", lambda r: functions.get(r.post.function, r.post.function)),
        exports.Column("Bescheid-Nr.", lambda r: r.funding.notice_number or "", width=16),
        exports.Column("Bescheid vom", lambda r: r.funding.notice_date, exports.DATE, 12),
        exports.Column("Gefördert von", lambda r: r.funding.funded_from, exports.DATE, 12),
        exports.Column("Gefördert bis", lambda r: r.funding.funded_until, exports.DATE, 12),
        exports.Column("VZÄ gefördert", lambda r: r.fte_funded, two, 11),
        exports.Column("VZÄ besetzt (Durchschnitt)", lambda r: round2(r.fte_filled), two, 12),
        exports.Column("Monate gefördert", lambda r: round2(r.months_funded), two, 11),
        exports.Column("Monate besetzt", lambda r: round2(r.months_filled), two, 11),
        exports.Column("VZÄ-Monate gefördert", lambda r: round2(r.fte_months_funded), two, 12),
        exports.Column("VZÄ-Monate besetzt", lambda r: round2(r.fte_months_filled), two, 12),
        exports.Column("Bewilligt (EUR)", lambda r: r.granted, money, 14),
        exports.Column("Weitergeleitet (EUR)", lambda r: r.forwarded, money, 14),
        exports.Column("Beim Kreis verblieben (EUR)", lambda r: r.remaining, money, 14),
        exports.Column("Hinweis", lambda r: "; ".join(r.hints), width=40),
    ]


# The columns a total row fills (by heading), and how.
_TOTALS = {
    "VZÄ gefördert": lambda t: t.fte_funded,
    "VZÄ besetzt (Durchschnitt)": lambda t: round2(t.fte_filled),
    "Monate gefördert": lambda t: round2(t.months_funded),
    "Monate besetzt": lambda t: round2(t.months_filled),
    "VZÄ-Monate gefördert": lambda t: round2(t.fte_months_funded),
    "VZÄ-Monate besetzt": lambda t: round2(t.fte_months_filled),
    "Bewilligt (EUR)": lambda t: t.granted,
    "Weitergeleitet (EUR)": lambda t: t.forwarded,
    "Beim Kreis verblieben (EUR)": lambda t: t.remaining,
}

HEADER_ROW = 5  # 0-based row of the column headings of the statement


def nachweis_workbook(data: FundingYear, target: Any, created_by: str, created_at: Any) -> None:
    """Write the Zahlenmäßiger Nachweis of ``data`` (xlsx) into ``target``.

    One sheet with a row per grant, a sum row per Baustein and the total; one
    sheet with every forwarded amount. Values only, no formulas: the totals are
    computed here, so the file shows the same numbers as the page.
    """
    book = exports.new_workbook(target)
    cells = exports.CellWriter(book)
    bold = cells.format(None, bold=True)
    title = cells.format(None, bold=True, font_size=14)
    columns = _columns()
    labels = ["Baustein", *(c.label for c in columns)]
    widths = [30, *(c.width for c in columns)]
    formats = [None, *(cells.format(c.num_format) if c.num_format else None for c in columns)]
    total_formats = [
        cells.total,
        *(cells.format(c.num_format, bold=True, top=1) for c in columns),
    ]

    sheet = book.add_worksheet("Zahlenmäßiger Nachweis")
    for col, width in enumerate(widths):
        sheet.set_column(col, col, width)
    sheet.write_string(0, 0, "Zahlenmäßiger Nachweis – Kommunales Integrationsmanagement", title)
    cells.write(sheet, 1, 0, "Förderjahr", bold)
    cells.write(sheet, 1, 1, data.year)
    cells.write(sheet, 2, 0, "Erstellt", bold)
    cells.write(sheet, 2, 1, created_at)  # stored time (UTC); written in the Kreis' zone
    cells.write(sheet, 2, 2, created_by)
    cells.write(sheet, 3, 0, "Berechnung", bold)
    cells.write(sheet, 3, 1, MONTH_RULE)
    cells.header_row(sheet, HEADER_ROW, labels, widths)
    sheet.freeze_panes(HEADER_ROW + 1, 2)

    row = HEADER_ROW
    for group in data.bausteine:
        for item in group.rows:
            row += 1
            cells.write_row(sheet, row, [group.label, *(c.get(item) for c in columns)], formats)
        row += 1
        _total_row(cells, sheet, row, f"Summe {group.label}", group, columns, total_formats)
    row += 1
    _total_row(cells, sheet, row, "Gesamt", data.total, columns, total_formats)

    _forwards_sheet(book, cells, data)
    book.close()


def _total_row(cells, sheet, row, label, totals: Totals, columns, formats) -> None:
    values = [label] + [_TOTALS[c.label](totals) if c.label in _TOTALS else None for c in columns]
    cells.write_row(sheet, row, values, formats)


def _forwards_sheet(book: Any, cells: exports.CellWriter, data: FundingYear) -> None:
    sheet = book.add_worksheet("Weiterleitungen")
    labels = [
        "Baustein",
        "Stelle",
        "Empfänger",
        "Art",
        "Datum",
        "Betrag (EUR)",
        "Aktenzeichen / Vermerk",
    ]
    widths = [30, 32, 32, 12, 12, 14, 32]
    for col, width in enumerate(widths):
        sheet.set_column(col, col, width)
    cells.header_row(sheet, 0, labels, widths)
    sheet.freeze_panes(1, 0)
    money = cells.format(exports.TWO_DECIMALS)
    formats = [None, None, None, None, cells.date, money, None]
    row = 0
    for group in data.bausteine:
        for item in group.rows:
            for forward in item.funding.forwards:
                row += 1
                cells.write_row(
                    sheet,
                    row,
                    [
                        group.label,
                        item.post.title,
                        forward.recipient,
                        "Kommune" if forward.municipality_id else "Träger",
                        forward.forwarded_on,
                        forward.amount,
                        forward.reference or "",
                    ],
                    formats,
                )
    row += 1
    cells.write_row(
        sheet,
        row,
        ["Gesamt", None, None, None, None, data.total.forwarded, None],
        [
            cells.total,
            None,
            None,
            None,
            None,
            cells.format(exports.TWO_DECIMALS, bold=True, top=1),
            None,
        ],
    )
