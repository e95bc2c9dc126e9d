"""The evaluation report's workbook: one sheet after the other, row by row.

Written in xlsxwriter's ``constant_memory`` mode. Totals rows are computed here,
not left to formulas that a viewer might not recalculate; in a published report
the cells chosen by :meth:`ReportData.hidden_cells` are shown as ".".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import IO, Any

from kim_admin import coverage, exports, suppression
from kim_admin.monitoring.status import APPROVED, STATUSES, SUBMITTED
from kim_admin.monitoring.workflow import on_time
from kim_admin.permissions import MUNICIPAL_STAFF, role_label
from models import Indicator
from models.partner import PARTNER_KINDS
from models.post import BAUSTEINE, POST_FUNCTIONS

from .data import ReportData, number

SHEETS = [
    "Übersicht",
    "Kennzahlen",
    "Zeitreihe",
    "Zielgruppen",
    "Stellen",
    "Räume",
    "Partner",
    "Versorgung",
    "Meldestand",
    "Rohdaten",
]

DISTRICT_LEVEL = "Kreisebene"
TOTAL = "Summe"


class ReportWriter:
    """Writes a :class:`ReportData` into a workbook, one sheet after the other."""

    def __init__(self, data: ReportData, user: Any, target: str | IO[bytes]) -> None:
        self.data = data
        self.user = user
        self.book = exports.new_workbook(target, constant_memory=True)
        self.cells = exports.CellWriter(self.book)
        fmt = self.cells.format
        self.title = fmt(None, bold=True, font_size=14)
        self.label = fmt(None, bold=True)
        self.wrap = fmt(None, text_wrap=True, valign="top")
        self.integer = fmt(exports.INTEGER)
        self.one = fmt(exports.ONE_DECIMAL)
        self.two = fmt(exports.TWO_DECIMALS)
        self.percent = fmt("0.0 %")
        self.total_integer = fmt(exports.INTEGER, bold=True, top=1)
        self.total_one = fmt(exports.ONE_DECIMAL, bold=True, top=1)
        self.total_two = fmt(exports.TWO_DECIMALS, bold=True, top=1)
        self.total_text = fmt(None, bold=True, top=1)
        self.range_label = f"{data.first} – {data.last}"
        self.hidden = data.hidden_cells()
        self.dot = fmt(None, align="right")

    def write(self) -> None:
        """Write every sheet and close the workbook."""
        self.overview()
        self.figures()
        self.time_series()
        self.target_groups()
        self.posts()
        self.rooms()
        self.partners()
        self.coverage()
        self.submission_status()
        if self.data.options.include_raw and not self.data.options.publish:
            self.raw_data()
        self.book.close()

    # --- helpers ---------------------------------------------------------------
    def _value_format(self, indicator: Indicator, total: bool = False) -> Any:
        if indicator.decimal_places:
            return self.total_two if total else self.two
        return self.total_integer if total else self.integer

    def _rate_format(self, indicator: Indicator, total: bool = False) -> Any:
        if indicator.decimal_places:
            return self.total_two if total else self.two
        return self.total_one if total else self.one

    def _sheet(
        self, name: str, heading: str, headers: Sequence[str], widths: Sequence[float]
    ) -> Any:
        """A sheet with a title line, a note line, then the header row (frozen)."""
        sheet = self.book.add_worksheet(name)
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        sheet.write_string(0, 0, heading, self.title)
        sheet.write_string(1, 0, f"Zeitraum: {self.range_label}")
        sheet.set_row(3, 30)
        self.cells.header_row(sheet, 3, headers)
        sheet.freeze_panes(4, 1)
        return sheet

    def _row(self, sheet: Any, row: int, values: Sequence[Any], formats: Sequence[Any]) -> None:
        if self.hidden:
            formats = self._row_formats(values, formats)
        self.cells.write_row(sheet, row, values, formats)

    def _shown(self, key: tuple, value: Any) -> Any:
        """The value, or "." where a published report hides it."""
        return suppression.SUPPRESSED if key in self.hidden else value

    def _row_formats(self, values: Sequence[Any], formats: Sequence[Any]) -> list[Any]:
        """Hidden cells are right-aligned like the numbers around them."""
        return [
            self.dot if v == suppression.SUPPRESSED else f
            for v, f in zip(values, formats, strict=True)
        ]

    @staticmethod
    def _sum(values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) if present else None

    # --- sheets ----------------------------------------------------------------
    def overview(self) -> None:
        data = self.data
        sheet = self.book.add_worksheet("Übersicht")
        sheet.set_column(0, 0, 34)
        sheet.set_column(1, 1, 80)
        approved = sum(1 for s in data.submissions if s.status == APPROVED)
        submitted = sum(1 for s in data.submissions if s.status == SUBMITTED)
        expected = len(data.towns) * len(data.periods)
        basis = (
            "nur freigegebene Meldungen"
            if data.options.approved_only
            else "alle erfassten Werte (auch nicht freigegebene)"
        )
        creator = f"{self.user.name} ({role_label(self.user.role)})"
        sheet.write_string(0, 0, "KIM-Evaluationsbericht", self.title)
        sheet.write_string(1, 0, "Kommunales Integrationsmanagement – Hochsauerlandkreis")
        rows: list[tuple[str, Any, Any]] = [
            ("Zeitraum", self.range_label, None),
            ("Quartale", len(data.periods), self.integer),
            ("Erstellt am", datetime.now(tz=self.cells.tz).replace(tzinfo=None), None),
            ("Erstellt von", creator, None),
            ("Kommunen", ", ".join(t.name for t in data.towns), self.wrap),
            ("Datenbasis", basis, None),
            ("Meldungen erwartet", expected, self.integer),
            ("davon freigegeben", approved, self.integer),
            ("davon gemeldet, noch nicht freigegeben", submitted, self.integer),
            ("Freigabequote", approved / expected if expected else 0, self.percent),
            ("Veröffentlichung", self.publication_note(), self.wrap),
        ]
        row = 3
        for label, value, fmt in rows:
            sheet.write_string(row, 0, label, self.label)
            if isinstance(value, datetime):
                self.cells.write(sheet, row, 1, value, self.cells.datetime)
            else:
                self.cells.write(sheet, row, 1, value, fmt)
            row += 1
        row += 1
        sheet.write_string(row, 0, "Legende", self.label)
        legend = [
            ("Bewegungsgröße", "im Zeitraum summiert (z. B. neue Fälle je Quartal)"),
            ("Bestandsgröße", f"Stand am Ende des Zeitraums ({data.last})"),
            ("je 1.000 Einwohner", "Wert ÷ Einwohnerzahl × 1.000"),
            ("leere Zelle", "kein Wert gemeldet"),
            ("Summe", "vom Programm berechnet, nicht als Formel"),
            ("VZÄ", "Vollzeitäquivalente (Stellenanteile)"),
        ]
        for label, text in legend:
            row += 1
            sheet.write_string(row, 0, label)
            sheet.write_string(row, 1, text)
        row += 2
        sheet.write_string(row, 0, "Blätter", self.label)
        raw = data.options.include_raw and not data.options.publish
        for name in SHEETS[1:] if raw else SHEETS[1:-1]:
            row += 1
            sheet.write_string(row, 0, name)

    def publication_note(self) -> str:
        """What the Übersicht says about small-number suppression."""
        options = self.data.options
        if not options.publish:
            return "interne Fassung: alle Werte exakt"
        small = "1" if options.threshold == 2 else f"1 bis {options.threshold - 1}"
        return (
            f"für Veröffentlichung: Fallzahlen von {small} als „.“ (Schwelle {options.threshold}), "
            "dazu Sekundärsperrung, damit kein Wert aus Summen errechnet werden kann; "
            "ohne Rohdaten"
        )

    def figures(self) -> None:
        """Kennzahlen: municipality × indicator, totals, per 1,000 inhabitants, bar chart."""
        data = self.data
        indicators = data.indicators
        headers = ["Kommune", "AGS", "Einwohner"]
        headers += [f"{i.code} – {i.name}" for i in indicators]
        headers += [f"{i.code} je 1.000 Einwohner" for i in indicators]
        n = len(indicators)
        sheet = self._sheet(
            "Kennzahlen",
            f"Kennzahlen je Kommune (Bewegungsgrößen summiert, Bestandsgrößen zum {data.last})",
            headers,
            [24, 10, 12] + [16] * (2 * n),
        )
        value_formats = [self._value_format(i) for i in indicators]
        rate_formats = [self._rate_format(i) for i in indicators]
        row = 4
        for town in data.towns:
            exact = [data.range_values.get((town.id, i.id)) for i in indicators]
            rates = [
                v / town.population * 1000 if v is not None and town.population else None
                for v in exact
            ]
            keys = [("K", town.id, i.id) for i in indicators]
            values = [self._shown(k, v) for k, v in zip(keys, exact, strict=True)]
            rates = [self._shown(k, v) for k, v in zip(keys, rates, strict=True)]
            self._row(
                sheet,
                row,
                [town.name, town.ags, town.population, *values, *rates],
                [None, None, self.integer, *value_formats, *rate_formats],
            )
            row += 1
        last_town_row = row - 1
        population = sum(t.population for t in data.towns)
        exact = [data.total(i) for i in indicators]
        keys = [("KT", i.id) for i in indicators]
        totals = [self._shown(k, v) for k, v in zip(keys, exact, strict=True)]
        total_rates = [
            self._shown(k, v / population * 1000 if v is not None and population else None)
            for k, v in zip(keys, exact, strict=True)
        ]
        self._row(
            sheet,
            row,
            [TOTAL, "", population, *totals, *total_rates],
            [
                self.total_text,
                self.total_text,
                self.total_integer,
                *[self._value_format(i, True) for i in indicators],
                *[self._rate_format(i, True) for i in indicators],
            ],
        )
        sheet.autofilter(3, 0, last_town_row, len(headers) - 1)
        chart = self.book.add_chart({"type": "column"})
        for offset, indicator in enumerate(indicators):
            if indicator.decimal_places:
                continue  # FTE per 1,000 inhabitants would vanish beside case counts
            col = 3 + n + offset
            chart.add_series(
                {
                    "name": f"{indicator.code} je 1.000 EW",
                    "categories": ["Kennzahlen", 4, 0, last_town_row, 0],
                    "values": ["Kennzahlen", 4, col, last_town_row, col],
                }
            )
        chart.set_title({"name": "Kennzahlen je 1.000 Einwohner"})
        chart.set_y_axis({"name": "je 1.000 Einwohner", "num_format": "#,##0.0"})
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 960, "height": 420})
        sheet.insert_chart(row + 2, 0, chart)

    def time_series(self) -> None:
        """Zeitreihe: each indicator per quarter, all chosen municipalities, line chart."""
        data = self.data
        indicators = data.indicators
        headers = ["Quartal", "Quartalsende", *[f"{i.code} – {i.name}" for i in indicators]]
        sheet = self._sheet(
            "Zeitreihe",
            "Zeitreihe: Summe der gewählten Kommunen je Quartal",
            headers,
            [12, 14] + [16] * len(indicators),
        )
        formats = [None, self.cells.date, *[self._value_format(i) for i in indicators]]
        row = 4
        for period in data.periods:
            values = [
                self._shown(data.series_key(period, i), data.series.get((period.id, i.id)))
                for i in indicators
            ]
            self._row(sheet, row, [str(period), period.ends_on, *values], formats)
            row += 1
        last_row = row - 1
        totals = []
        for indicator in indicators:
            if indicator.kind == "stock":
                total = data.series.get((data.last.id, indicator.id))
            else:
                total = self._sum(data.series.get((p.id, indicator.id)) for p in data.periods)
            totals.append(self._shown(("KT", indicator.id), total))
        self._row(
            sheet,
            row,
            ["Zeitraum", data.last.ends_on, *totals],
            [
                self.total_text,
                self.cells.format(exports.DATE, bold=True, top=1),
                *[self._value_format(i, True) for i in indicators],
            ],
        )
        sheet.write_string(row + 1, 0, "Bewegungsgrößen summiert, Bestandsgrößen zum Ende.")
        sheet.autofilter(3, 0, last_row, len(headers) - 1)
        chart = self.book.add_chart({"type": "line"})
        for offset, indicator in enumerate(indicators):
            if indicator.decimal_places:
                continue
            col = 2 + offset
            chart.add_series(
                {
                    "name": f"{indicator.code}",
                    "categories": ["Zeitreihe", 4, 0, last_row, 0],
                    "values": ["Zeitreihe", 4, col, last_row, col],
                    "marker": {"type": "circle", "size": 5},
                }
            )
        chart.set_title({"name": "Kennzahlen je Quartal"})
        chart.set_y_axis({"name": "Anzahl", "num_format": "#,##0"})
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 960, "height": 420})
        sheet.insert_chart(row + 3, 0, chart)

    def target_groups(self) -> None:
        """Zielgruppen: municipality × target group for indicators broken down by group."""
        data = self.data
        indicators = [i for i in data.indicators if i.by_target_group]
        headers = ["Kommune", "Zielgruppe", *[f"{i.code} – {i.name}" for i in indicators]]
        sheet = self._sheet(
            "Zielgruppen",
            "Kennzahlen nach Zielgruppe (Bewegungsgrößen summiert, Bestandsgrößen zum "
            f"{data.last})",
            headers,
            [24, 40] + [16] * len(indicators),
        )
        formats = [None, None, *[self._value_format(i) for i in indicators]]
        row = 4
        for town in data.towns:
            for group in data.groups:
                exact = [data.group_values.get((town.id, i.id, group.id)) for i in indicators]
                if all(v is None for v in exact) and not group.active:
                    continue
                values = [
                    self._shown(("G", town.id, i.id, group.id), v)
                    for i, v in zip(indicators, exact, strict=True)
                ]
                self._row(sheet, row, [town.name, group.name, *values], formats)
                row += 1
        last_row = row - 1
        totals = [
            self._shown(
                ("KT", i.id),
                self._sum(v for (_, ind, _), v in data.group_values.items() if ind == i.id),
            )
            for i in indicators
        ]
        total_formats = [self._value_format(i, True) for i in indicators]
        self._row(
            sheet,
            row,
            [TOTAL, "alle Zielgruppen", *totals],
            [self.total_text, self.total_text, *total_formats],
        )
        sheet.autofilter(3, 0, max(last_row, 4), len(headers) - 1)
        row += 2
        sheet.write_string(row, 0, "Summe je Zielgruppe (alle gewählten Kommunen)", self.label)
        for group in data.groups:
            exact = [data.group_total(i, group) for i in indicators]
            if all(v is None for v in exact) and not group.active:
                continue
            values = [
                self._shown(("GC", i.id, group.id), v)
                for i, v in zip(indicators, exact, strict=True)
            ]
            row += 1
            self._row(sheet, row, [TOTAL, group.name, *values], formats)

    def posts(self) -> None:
        """Stellen: FTE by municipality, function and Baustein."""
        data = self.data
        district = self.user.role != MUNICIPAL_STAFF
        names = {t.id: t.name for t in data.towns}
        functions = dict(POST_FUNCTIONS)
        bausteine = dict(BAUSTEINE)
        order = {code: n for n, (code, _) in enumerate(BAUSTEINE)}
        rows = sorted(
            data.posts(include_district_level=district),
            key=lambda r: (r[0] is not None, names.get(r[0], ""), order.get(r[2], 9), r[1]),
        )
        headers = [
            "Kommune",
            "Funktion",
            "Baustein",
            "Stellen",
            "VZÄ gesamt",
            "VZÄ besetzt",
            "VZÄ vakant/ausgeschrieben",
        ]
        sheet = self._sheet(
            "Stellen",
            "Stellen im Zeitraum nach Kommune, Funktion und Baustein",
            headers,
            [24, 24, 40, 10, 14, 14, 22],
        )
        formats = [None, None, None, self.integer, self.two, self.two, self.two]
        row = 4
        for town, function, baustein, count, fte, filled, vacant in rows:
            self._row(
                sheet,
                row,
                [
                    names.get(town, DISTRICT_LEVEL),
                    functions.get(function, function),
                    bausteine.get(baustein, baustein),
                    count,
                    number(fte),
                    number(filled),
                    number(vacant),
                ],
                formats,
            )
            row += 1
        sheet.autofilter(3, 0, max(row - 1, 4), len(headers) - 1)
        totals = [sum(number(r[k]) or 0 for r in rows) for k in (3, 4, 5, 6)]
        self._row(
            sheet,
            row,
            [TOTAL, "", "", *totals],
            [self.total_text] * 3 + [self.total_integer, *[self.total_two] * 3],
        )

    def rooms(self) -> None:
        """Räume: active rooms, barrier-free rooms and seats per municipality."""
        data = self.data
        rooms = data.rooms()
        headers = ["Kommune", "Räume", "davon barrierefrei", "Plätze"]
        sheet = self._sheet("Räume", "Aktive Beratungsräume je Kommune", headers, [24, 10, 18, 10])
        row = 4
        for town in data.towns:
            count, free, seats = rooms.get(town.id, (0, 0, 0))
            self._row(sheet, row, [town.name, count, free, seats], [None] + [self.integer] * 3)
            row += 1
        sheet.autofilter(3, 0, row - 1, len(headers) - 1)
        totals = [sum(rooms.get(t.id, (0, 0, 0))[k] for t in data.towns) for k in range(3)]
        self._row(sheet, row, [TOTAL, *totals], [self.total_text] + [self.total_integer] * 3)

    def partners(self) -> None:
        """Partner: kind, municipalities and target groups served."""
        data = self.data
        kinds = dict(PARTNER_KINDS)
        headers = [
            "Name",
            "Art",
            "Kommunen",
            "Zielgruppen",
            "Kooperation seit",
            "Schriftliche Vereinbarung",
            "Aktiv",
        ]
        sheet = self._sheet(
            "Partner",
            "Kooperationspartner der gewählten Kommunen",
            headers,
            [36, 30, 36, 50, 16, 14, 8],
        )
        row = 4
        partners = data.partners()
        for partner, towns, groups in partners:
            self._row(
                sheet,
                row,
                [
                    partner.name,
                    kinds.get(partner.kind, partner.kind),
                    ", ".join(towns),
                    ", ".join(groups),
                    partner.cooperation_since,
                    partner.written_agreement,
                    partner.active,
                ],
                [None] * 7,
            )
            row += 1
        sheet.autofilter(3, 0, max(row - 1, 4), len(headers) - 1)
        active = sum(1 for p, _, _ in partners if p.active)
        self._row(
            sheet,
            row,
            [f"{len(partners)} Partner, davon {active} aktiv"],
            [self.total_text],
        )

    def coverage(self) -> None:
        """Versorgung: need against posts, partners and rooms, with gaps and parallels."""
        data = self.data
        columns = coverage.columns()
        sheet = self._sheet(
            "Versorgung",
            f"Versorgungsmatrix {data.last.year}: Bedarf und Angebot je Kommune und Zielgruppe",
            [c.label for c in columns],
            [c.width for c in columns],
        )
        formats = [self.cells.format(c.num_format) if c.num_format else None for c in columns]
        row = 4
        for cell in data.coverage:
            values = [c.get(cell) for c in columns]
            values[2] = self._shown(("N", cell.municipality.id, cell.group.id), values[2])
            self._row(sheet, row, values, formats)
            row += 1
        sheet.autofilter(3, 0, max(row - 1, 4), len(columns) - 1)
        gaps = sum(1 for c in data.coverage if c.gap)
        parallels = sum(1 for c in data.coverage if c.parallel)
        totals = [
            TOTAL,
            f"{gaps} Lücken, {parallels} Parallelstrukturen",
            self._shown(("NT",), data.need_total()),
        ]
        self._row(
            sheet,
            row,
            totals,
            [self.total_text, self.total_text, self.total_integer],
        )
        sheet.write_string(
            row + 2,
            0,
            "Lücke: Bedarf erfasst, aber keine Stelle und kein Partner für die Zielgruppe. "
            "Parallelstruktur: zwei oder mehr Partner derselben Art oder Stellen von zwei oder "
            "mehr Anstellungsträgern für dieselbe Zielgruppe in derselben Kommune.",
        )

    def submission_status(self) -> None:
        """Meldestand: municipality × quarter with status and punctuality."""
        data = self.data
        by_cell = {(s.municipality_id, s.period_id): s for s in data.submissions}
        headers = ["Kommune", *[str(p) for p in data.periods]]
        sheet = self._sheet(
            "Meldestand",
            "Meldestand je Kommune und Quartal",
            headers,
            [24] + [18] * len(data.periods),
        )
        late = self.cells.format(None, font_color="#9C0006")
        row = 4
        for town in data.towns:
            sheet.write_string(row, 0, town.name)
            for col, period in enumerate(data.periods, start=1):
                sub = by_cell.get((town.id, period.id))
                status = sub.status if sub else None
                text = STATUSES[status].label if status in STATUSES else status
                punctual = on_time(sub) if sub else None
                if punctual is False:
                    text += " (verspätet)"
                sheet.write_string(row, col, text, late if punctual is False else None)
            row += 1
        sheet.autofilter(3, 0, row - 1, len(headers) - 1)
        expected = len(data.towns) or 1
        for label, test in (
            ("Meldequote", lambda s: s.status in (SUBMITTED, APPROVED)),
            ("Freigabequote", lambda s: s.status == APPROVED),
        ):
            rates = []
            for period in data.periods:
                cells = [by_cell.get((t.id, period.id)) for t in data.towns]
                rates.append(sum(1 for s in cells if s and test(s)) / expected)
            fmt = self.cells.format("0.0 %", bold=True, top=1)
            self._row(sheet, row, [label, *rates], [self.total_text] + [fmt] * len(rates))
            row += 1

    def raw_data(self) -> None:
        """Rohdaten: every figure of the range, one row each."""
        headers = [
            "Kommune",
            "AGS",
            "Jahr",
            "Quartal",
            "Kennzahl (Kürzel)",
            "Kennzahl",
            "Zielgruppe",
            "Wert",
            "Status",
            "Kommentar",
            "Zuletzt geändert",
        ]
        sheet = self.book.add_worksheet("Rohdaten")
        for col, width in enumerate([24, 10, 6, 8, 14, 36, 36, 10, 14, 40, 17]):
            sheet.set_column(col, col, width)
        self.cells.header_row(sheet, 0, headers)
        sheet.freeze_panes(1, 0)
        year = self.cells.format("0")
        formats = [None, None, year, None, None, None, None, None, None, None, None]
        write_row = self.cells.write_row
        labels = {code: s.label for code, s in STATUSES.items()}
        row = 0
        for (
            town,
            ags,
            y,
            quarter,
            code,
            name,
            group,
            value,
            status,
            comment,
            changed,
        ) in self.data.raw_rows():
            row += 1
            if row >= exports.MAX_SHEET_ROWS:
                break  # Excel's limit; the list export of Kennzahlwerte has every row
            write_row(
                sheet,
                row,
                (
                    town,
                    ags,
                    y,
                    f"Q{quarter}",
                    code,
                    name,
                    group,
                    value,
                    labels.get(status, labels[None] if status is None else status),
                    comment,
                    changed,
                ),
                formats,
            )
        sheet.autofilter(0, 0, max(row, 1), len(headers) - 1)
