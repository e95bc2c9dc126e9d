"""The evaluation report's workbook: one sheet after the other, row by row.

Written in xlsxwriter's ``constant_memory`` mode. Totals rows are computed here,
not left to formulas that a viewer might not recalculate; in a published report
the cells chosen by :meth:`ReportData.hidden_cells` are shown as ".".

Every sheet is laid out like a table of official statistics: a title line (with
the range), the data status ("Datenstand") and the source above the header row
(always row 4, frozen, repeated on every printed page); below the table its
notes, the reporting status of provisional quarters and the symbol key. The
symbols are those of the Statistisches Bundesamt: "–" nothing (exactly 0, shown
by the number format, so the cell stays a number), "." suppressed, "p"
provisional (a number format suffix, so a provisional value stays a number too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from kim_admin import coverage, exports, suppression
from kim_admin.monitoring import status
from kim_admin.monitoring.status import APPROVED, SUBMITTED
from kim_admin.monitoring.workflow import on_time, rates
from kim_admin.permissions import is_scoped, role_label
from models import Indicator
from models.indicator import INDICATOR_KINDS
from models.partner import PARTNER_KINDS
from models.post import BAUSTEINE, POST_FUNCTIONS

from . import publication
from .data import DISTRICT, SOURCE, ReportData, number

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
#: Marks a provisional value or quarter (appended to labels and number formats).
PROVISIONAL = "p"
NOTHING = "–"
SYMBOL_KEY = (
    f"Zeichenerklärung: {NOTHING} nichts vorhanden · {suppression.SUPPRESSED} unterdrückt "
    f"(Geheimhaltung) · {PROVISIONAL} vorläufig"
)
SUM_NOTE = "Summen über die Kommunen mit Werten (nicht hochgerechnet)."
RATE_NOTE = (
    "Je 1.000 Einwohner: bezogen auf die Einwohner der Kommunen mit Wert, bei Bewegungsgrößen "
    "als Summe der Quartalswerte."
)
#: Told how far the work is: a percentage (0-100) and the step under way, in German.
Progress = Callable[[int, str], None]
#: Raw-data rows written between two progress reports.
RAW_PROGRESS_ROWS = 20_000


def no_progress(percent: int, step: str) -> None:
    """Progress nobody watches (a report built outside a job)."""


#: Rows above the header row: title, data status, source.
HEADER_ROW = 3
FIRST_ROW = HEADER_ROW + 1


def number_format(base: str, provisional: bool = False) -> str:
    """``base`` with 0 shown as "–" and, if provisional, " p" after the number."""
    if provisional:
        return f'{base}" {PROVISIONAL}";-{base}" {PROVISIONAL}";"{NOTHING} {PROVISIONAL}"'
    return f'{base};-{base};"{NOTHING}"'


def _header_text(text: str, limit: int = 120) -> str:
    """Text for a printed page's header or footer ("&" escaped, Excel's length limit)."""
    return text[:limit].replace("&", "&&")


class ReportWriter:
    """Writes a :class:`ReportData` into a workbook, one sheet after the other."""

    def __init__(
        self,
        data: ReportData,
        user: Any,
        target: str | IO[bytes],
        progress: Progress = no_progress,
        start: int = 0,
    ) -> None:
        self.data = data
        self.user = user
        self.progress = progress
        #: Where the writing starts on the progress scale (reading came before).
        self.start = start
        #: The part of the progress scale of the sheet being written.
        self._span = (start, 95)
        self.book = exports.new_workbook(target, constant_memory=True)
        self.cells = exports.CellWriter(self.book)
        fmt = self.cells.format
        self.title = fmt(None, bold=True, font_size=14)
        self.label = fmt(None, bold=True)
        self.wrap = fmt(None, text_wrap=True, valign="top")
        self.percent = fmt("0.0 %")
        self.total_text = fmt(None, bold=True, top=1)
        self.range_label = f"{data.first} – {data.last}"
        self.hidden = data.hidden_cells()
        #: Every cell of a published report's audited table (empty for internal ones).
        self.published = data.publication_table().values if data.options.publish else {}
        self.dot = fmt(None, align="right")
        basis = (
            "nur freigegebene Meldungen"
            if data.options.approved_only
            else "alle erfassten Werte (auch nicht freigegebene)"
        )
        self.basis = basis
        self.status_line = f"{data.data_status()} · Datenbasis: {basis}"

    def write(self) -> None:
        """Write every sheet and close the workbook, reporting progress sheet by sheet.

        The raw-data sheet, when asked for, weighs as much as all others together
        (it holds a row per figure) and reports its progress as it goes.
        """
        steps: list[tuple[Callable[[], None], str, int]] = [
            (self.overview, "Übersicht", 1),
            (self.figures, "Kennzahlen", 1),
            (self.time_series, "Zeitreihe", 1),
            (self.target_groups, "Zielgruppen", 1),
            (self.posts, "Stellen", 1),
            (self.rooms, "Räume", 1),
            (self.partners, "Partner", 1),
            (self.coverage, "Versorgung", 1),
            (self.submission_status, "Meldestand", 1),
        ]
        if self.data.options.include_raw and not self.data.options.publish:
            steps.append((self.raw_data, "Rohdaten", 9))
        total = sum(weight for _, _, weight in steps)
        span = 95 - self.start
        done = 0
        for write_sheet, name, weight in steps:
            begin = self.start + span * done // total
            self._span = (begin, self.start + span * (done + weight) // total)
            self.progress(begin, f"Blatt „{name}“ wird geschrieben")
            write_sheet()
            done += weight
        self.progress(95, "Arbeitsmappe wird abgeschlossen")
        self.book.close()

    # --- formats ----------------------------------------------------------------
    def number(self, base: str, provisional: bool = False, total: bool = False) -> Any:
        """A cell format for numbers (see :func:`number_format`), bold with a rule if total."""
        extra = {"bold": True, "top": 1} if total else {}
        return self.cells.format(number_format(base, provisional), **extra)

    def _value_format(self, indicator: Indicator, provisional: bool, total: bool = False) -> Any:
        base = exports.TWO_DECIMALS if indicator.decimal_places else exports.INTEGER
        return self.number(base, provisional, total)

    def _rate_format(self, indicator: Indicator, provisional: bool, total: bool = False) -> Any:
        base = exports.TWO_DECIMALS if indicator.decimal_places else exports.ONE_DECIMAL
        return self.number(base, provisional, total)

    # --- layout -----------------------------------------------------------------
    def _print_setup(self, sheet: Any, heading: str, repeat: bool = True) -> None:
        """Landscape A4, fit to the page width, the header row on every page."""
        sheet.set_landscape()
        sheet.set_paper(9)  # A4
        sheet.fit_to_pages(1, 0)
        if repeat:
            sheet.repeat_rows(HEADER_ROW)
        sheet.set_header(
            f"&L{_header_text(heading)}&R{_header_text(self.data.data_status())}", {"margin": 0.2}
        )
        sheet.set_footer(f"&L{_header_text(SOURCE)}&RSeite &P von &N", {"margin": 0.2})

    def _sheet(
        self,
        name: str,
        heading: str,
        headers: Sequence[str],
        widths: Sequence[float],
        freeze_columns: int = 1,
    ) -> Any:
        """A sheet with title, data status and source, then the header row (frozen)."""
        sheet = self.book.add_worksheet(name)
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        sheet.write_string(0, 0, heading, self.title)
        sheet.write_string(1, 0, self.status_line)
        sheet.write_string(2, 0, SOURCE)
        self.cells.header_row(sheet, HEADER_ROW, headers, widths)
        sheet.freeze_panes(FIRST_ROW, freeze_columns)
        self._print_setup(sheet, heading)
        return sheet

    def _footer(
        self, sheet: Any, row: int, notes: Iterable[str] = (), quarterly: bool = True
    ) -> int:
        """Notes below a table from ``row`` on: the sheet's own, the provisional quarters'
        reporting status (for sheets of quarterly figures), the symbol key. Returns the
        row after the last."""
        row += 1
        lines = list(notes)
        if quarterly:
            lines += self.coverage_notes()
        lines.append(SYMBOL_KEY)
        if self.data.options.publish:
            lines.append(publication.NOT_PUBLISHED_NOTE)
        for line in lines:
            sheet.write_string(row, 0, line)
            row += 1
        return row

    def coverage_notes(self) -> list[str]:
        """ "Meldestand Q3/2026: 1 von 7 Kommunen freigegeben (vorläufig)", one per
        provisional quarter, or one line saying that every quarter is complete."""
        data = self.data
        if not data.provisional_periods:
            return [
                f"Meldestand: alle Quartale des Zeitraums von allen {len(data.towns)} "
                "Kommunen freigegeben."
            ]
        return [f"Meldestand {data.coverage_line(p)}" for p in data.provisional_periods]

    def _row(self, sheet: Any, row: int, values: Sequence[Any], formats: Sequence[Any]) -> None:
        if self.hidden:
            formats = self._row_formats(values, formats)
        self.cells.write_row(sheet, row, values, formats)

    def _shown(self, key: tuple, value: Any) -> Any:
        """The value, or "." where a published report hides it ("x" where it shows
        no such cell at all: a stock per municipality and target group)."""
        if self.data.options.publish and key[0] == "G" and key not in self.published:
            return publication.NOT_PUBLISHED
        return suppression.SUPPRESSED if key in self.hidden else value

    def _total_rate(self, indicator: Indicator) -> Any:
        """The range's rate per 1,000, or "." where a published report must not show it.

        A flow's rate over the range is the sum of its quarterly rates. When the
        quarters' populations differ (someone did not report), that sum is a second
        equation over the quarters, independent of their total, and would let hidden
        quarters be worked out; the audit does not model it, so it is not shown.
        """
        data = self.data
        if self.hidden and indicator.kind == "flow" and not indicator.decimal_places:
            populations = {data.series_population.get((p.id, indicator.id)) for p in data.periods}
            if len(populations) > 1:
                return suppression.SUPPRESSED
        return self._shown(("KT", indicator.id), data.total_rate(indicator))

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

    def _creator(self) -> str:
        """The user's display name, else their e-mail address, and their role."""
        who = (self.user.name or "").strip() or self.user.email
        return f"{who} ({role_label(self.user.role)})"

    # --- sheets ----------------------------------------------------------------
    def overview(self) -> None:
        """Übersicht: what the report holds, how complete it is, what its figures mean."""
        data = self.data
        sheet = self.book.add_worksheet("Übersicht")
        widths = [34, 50, 60, 12, 16, 50, 14]
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        heading = "KIM-Evaluationsbericht"
        self._print_setup(sheet, heading, repeat=False)
        approved = sum(1 for s in data.submissions if s.status == APPROVED)
        submitted = sum(1 for s in data.submissions if s.status == SUBMITTED)
        expected = len(data.towns) * len(data.periods)
        sheet.write_string(0, 0, heading, self.title)
        sheet.write_string(1, 0, f"Kommunales Integrationsmanagement – {DISTRICT}")
        sheet.write_string(2, 0, data.data_status())
        sheet.write_string(3, 0, SOURCE)
        provisional = ", ".join(str(p) for p in data.provisional_periods) or "keine"
        integer = self.number(exports.INTEGER)
        rows: list[tuple[str, Any, Any]] = [
            ("Zeitraum", self.range_label, None),
            ("Quartale", len(data.periods), integer),
            # Aware (UTC): CellWriter shows it in the Kreis' time zone, once.
            ("Erstellt am", data.read_at, None),
            ("Erstellt von", self._creator(), None),
            ("Kommunen", ", ".join(t.name for t in data.towns), self.wrap),
            ("Datenbasis", self.basis, None),
            ("Meldungen erwartet", expected, integer),
            ("davon freigegeben", approved, integer),
            ("davon eingereicht, noch nicht freigegeben", submitted, integer),
            ("Freigabequote", approved / expected if expected else 0, self.percent),
            ("Vorläufige Quartale (p)", provisional, self.wrap),
            ("Veröffentlichung", self.publication_note(), self.wrap),
            *self.protection_rows(integer),
        ]
        row = 5
        for label, value, fmt in rows:
            if fmt is self.wrap:
                sheet.set_row(row, exports.row_height([value], [widths[1]]))
            sheet.write_string(row, 0, label, self.label)
            self.cells.write(sheet, row, 1, value, fmt)
            row += 1
        row += 1
        sheet.write_string(row, 0, "Meldestand je Quartal", self.label)
        for period in data.periods:
            row += 1
            sheet.write_string(row, 0, data.coverage_line(period))
        if data.provisional_periods:
            row += 1
            sheet.write_string(
                row,
                0,
                f"{PROVISIONAL} vorläufig: In diesen Quartalen sind nicht alle Meldungen "
                f"freigegeben. {SUM_NOTE} {RATE_NOTE}",
            )
        row += 2
        sheet.write_string(row, 0, "Legende", self.label)
        legend = [
            ("Bewegungsgröße", "je Quartal gezählt, im Zeitraum summiert (z. B. neue Fälle)"),
            ("Bestandsgröße", f"Stand am Quartalsende, im Zeitraum der Stand zum {data.last}"),
            ("je 1.000 Einwohner", "Wert ÷ Einwohnerzahl × 1.000 (Summen: siehe „p“)"),
            (NOTHING, "nichts vorhanden (Wert 0)"),
            (suppression.SUPPRESSED, "unterdrückt (Geheimhaltung kleiner Fallzahlen)"),
            (PROVISIONAL, "vorläufig: nicht alle Meldungen des Quartals freigegeben"),
            ("leere Zelle", "kein Wert gemeldet (bzw. keiner in der gewählten Datenbasis)"),
            ("Summe", "vom Programm berechnet, nicht als Formel"),
            ("VZÄ", "Vollzeitäquivalente (Stellenanteile)"),
        ]
        for label, text in legend:
            row += 1
            sheet.write_string(row, 0, label)
            sheet.write_string(row, 1, text)
        row += 2
        row = self._definitions(sheet, row, widths)
        row += 1
        sheet.write_string(row, 0, "Blätter", self.label)
        raw = data.options.include_raw and not data.options.publish
        for name in SHEETS[1:] if raw else SHEETS[1:-1]:
            row += 1
            sheet.write_string(row, 0, name)
        self._footer(sheet, row + 1, quarterly=False)

    def _definitions(self, sheet: Any, row: int, widths: Sequence[float]) -> int:
        """The indicators: code, name, description, unit, kind and how a range sums them."""
        sheet.write_string(row, 0, "Kennzahlen: Definitionen", self.label)
        row += 1
        headers = [
            "Kürzel",
            "Kennzahl",
            "Beschreibung",
            "Einheit",
            "Art",
            "Zusammenfassung (Zeitraum, Kommunen)",
            "nach Zielgruppen",
        ]
        self.cells.header_row(sheet, row, headers, widths)
        kinds = dict(INDICATOR_KINDS)
        how = {
            "flow": "Summe der Quartale des Zeitraums; Summe über die Kommunen",
            "stock": "Stand des letzten Quartals des Zeitraums; Summe über die Kommunen",
        }
        for indicator in self.data.indicators:
            row += 1
            values = [
                indicator.code,
                indicator.name,
                indicator.description or "",
                indicator.unit,
                kinds.get(indicator.kind, indicator.kind),
                how.get(indicator.kind, ""),
                indicator.by_target_group,
            ]
            sheet.set_row(row, exports.row_height([str(v) for v in values], widths))
            self.cells.write_row(sheet, row, values, [self.wrap] * len(values))
        return row + 1

    def publication_note(self) -> str:
        """What the Übersicht says about the protection of published figures."""
        options = self.data.options
        protection = self.data.protection()
        if protection is None:
            return "interne Fassung: alle Werte exakt"
        small = "1" if options.threshold == 2 else f"1 bis {options.threshold - 1}"
        note = (
            f"für Veröffentlichung, ohne Rohdaten. Schutzregel: Fallzahlen von {small} werden "
            f"als „.“ gesperrt (Schwelle {options.threshold}, Primärsperrung); weitere Werte "
            "werden gesperrt (Sekundärsperrung), bis sich für jeden gesperrten Wert aus allen "
            "gezeigten Werten, Summen und Kontenregeln der Prüfregeln zusammen nur ein Bereich "
            f"von mindestens {self.data.protection_width} errechnen lässt (Intervallschutz, "
            f"Schutzbreite {self.data.protection_width}; Nullen werden gezeigt). "
            f"Gesperrt: {len(protection.primary)} primär, {len(protection.secondary)} sekundär. "
            f"{publication.GRID_NOTE}"
        )
        if protection.unprotected:
            note += f" Nicht voll geschützt: {len(protection.unprotected)} Werte."
        return note

    def protection_rows(self, integer: Any) -> list[tuple[str, Any, Any]]:
        """The protection of a published report, one figure a row (none for internal ones)."""
        protection = self.data.protection()
        if protection is None:
            return []
        return [
            ("Schutzregel", "Intervallschutz (exakte Prüfung aller Gleichungen)", None),
            ("Schwelle", self.data.options.threshold, integer),
            ("Schutzbreite", self.data.protection_width, integer),
            ("Gesperrt primär", len(protection.primary), integer),
            ("Gesperrt sekundär", len(protection.secondary), integer),
            ("Zeitraster", publication.GRID_NOTE, self.wrap),
        ]

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
            f"Kennzahlen je Kommune, {self.range_label} (Bewegungsgrößen summiert, "
            f"Bestandsgrößen zum {data.last})",
            headers,
            [24, 10, 12] + [18] * (2 * n),
        )
        integer = self.number(exports.INTEGER)
        row = FIRST_ROW
        marked: list[str] = []
        for town in data.towns:
            exact = [data.range_values.get((town.id, i.id)) for i in indicators]
            rates_ = [
                v / town.population * 1000 if v is not None and town.population else None
                for v in exact
            ]
            late = [data.town_provisional(town.id, i) for i in indicators]
            if any(late):
                marked.append(town.name)
            keys = [("K", town.id, i.id) for i in indicators]
            values = [self._shown(k, v) for k, v in zip(keys, exact, strict=True)]
            rates_ = [self._shown(k, v) for k, v in zip(keys, rates_, strict=True)]
            self._row(
                sheet,
                row,
                [town.name, town.ags, town.population, *values, *rates_],
                [
                    None,
                    None,
                    integer,
                    *[self._value_format(i, p) for i, p in zip(indicators, late, strict=True)],
                    *[self._rate_format(i, p) for i, p in zip(indicators, late, strict=True)],
                ],
            )
            row += 1
        last_town_row = row - 1
        population = sum(t.population for t in data.towns)
        keys = [("KT", i.id) for i in indicators]
        totals = [self._shown(k, data.total(i)) for k, i in zip(keys, indicators, strict=True)]
        total_rates = [self._total_rate(i) for i in indicators]
        late = [data.total_provisional(i) for i in indicators]
        self._row(
            sheet,
            row,
            [TOTAL, "", population, *totals, *total_rates],
            [
                self.total_text,
                self.total_text,
                self.number(exports.INTEGER, total=True),
                *[self._value_format(i, p, True) for i, p in zip(indicators, late, strict=True)],
                *[self._rate_format(i, p, True) for i, p in zip(indicators, late, strict=True)],
            ],
        )
        sheet.autofilter(HEADER_ROW, 0, last_town_row, len(headers) - 1)
        row = self._footer(sheet, row + 1, [SUM_NOTE, RATE_NOTE])
        chart = self.book.add_chart({"type": "column"})
        for offset, indicator in enumerate(indicators):
            if indicator.decimal_places:
                continue  # FTE per 1,000 inhabitants would vanish beside case counts
            col = 3 + n + offset
            chart.add_series(
                {
                    "name": f"{indicator.code} je 1.000 EW",
                    "categories": ["Kennzahlen", FIRST_ROW, 0, last_town_row, 0],
                    "values": ["Kennzahlen", FIRST_ROW, col, last_town_row, col],
                }
            )
        chart.set_title({"name": "Kennzahlen je 1.000 Einwohner"})
        chart.set_y_axis({"name": "je 1.000 Einwohner", "num_format": "#,##0.0"})
        if marked:
            shown = ", ".join(marked[:6]) + (" …" if len(marked) > 6 else "")
            axis = f"{PROVISIONAL} vorläufig (nicht alles freigegeben): {shown}"
            chart.set_x_axis({"name": axis})
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 960, "height": 420})
        sheet.insert_chart(row + 1, 0, chart)

    def time_series(self) -> None:
        """Zeitreihe: each indicator per quarter over the chosen municipalities, line chart.

        Quarters that are not complete are labelled "Q3/2026 p", in the table and on
        the chart's axis; the chart shows rates per 1,000 inhabitants of the
        municipalities that reported, which stay comparable when some are missing.
        """
        data = self.data
        indicators = data.indicators
        n = len(indicators)
        counted = "freigegeben" if data.options.approved_only else "mit Werten oder Meldung"
        headers = [
            "Quartal",
            "Quartalsende",
            f"Kommunen {counted} (von {len(data.towns)})",
            *[f"{i.code} – {i.name}" for i in indicators],
            *[f"{i.code} je 1.000 Einwohner" for i in indicators],
        ]
        sheet = self._sheet(
            "Zeitreihe",
            f"Zeitreihe {self.range_label}: Summe der gewählten Kommunen je Quartal",
            headers,
            [12, 14, 16] + [18] * (2 * n),
        )
        integer = self.number(exports.INTEGER)
        row = FIRST_ROW
        for period in data.periods:
            late = data.is_provisional(period)
            keys = [data.series_key(period, i) for i in indicators]
            values = [
                self._shown(k, data.series.get((period.id, i.id)))
                for k, i in zip(keys, indicators, strict=True)
            ]
            rates_ = [
                self._shown(k, data.series_rate(period, i))
                for k, i in zip(keys, indicators, strict=True)
            ]
            self._row(
                sheet,
                row,
                [
                    data.period_label(period),
                    period.ends_on,
                    len(data.reported[period.id]),
                    *values,
                    *rates_,
                ],
                [
                    None,
                    self.cells.date,
                    integer,
                    *[self._value_format(i, late) for i in indicators],
                    *[self._rate_format(i, late) for i in indicators],
                ],
            )
            row += 1
        last_row = row - 1
        totals, total_rates = [], []
        for indicator in indicators:
            if indicator.kind == "stock":
                total = data.series.get((data.last.id, indicator.id))
            else:
                total = self._sum(data.series.get((p.id, indicator.id)) for p in data.periods)
            totals.append(self._shown(("KT", indicator.id), total))
            total_rates.append(self._total_rate(indicator))
        late = [data.total_provisional(i) for i in indicators]
        self._row(
            sheet,
            row,
            ["Zeitraum", data.last.ends_on, None, *totals, *total_rates],
            [
                self.total_text,
                self.cells.format(exports.DATE, bold=True, top=1),
                self.total_text,
                *[self._value_format(i, p, True) for i, p in zip(indicators, late, strict=True)],
                *[self._rate_format(i, p, True) for i, p in zip(indicators, late, strict=True)],
            ],
        )
        sheet.autofilter(HEADER_ROW, 0, last_row, len(headers) - 1)
        row = self._footer(
            sheet,
            row + 1,
            ["Bewegungsgrößen summiert, Bestandsgrößen zum Ende.", SUM_NOTE, RATE_NOTE],
        )
        chart = self.book.add_chart({"type": "line"})
        for offset, indicator in enumerate(indicators):
            if indicator.decimal_places:
                continue
            col = 3 + n + offset
            chart.add_series(
                {
                    "name": f"{indicator.code} je 1.000 EW",
                    "categories": ["Zeitreihe", FIRST_ROW, 0, last_row, 0],
                    "values": ["Zeitreihe", FIRST_ROW, col, last_row, col],
                    "marker": {"type": "circle", "size": 5},
                }
            )
        chart.set_title({"name": "Kennzahlen je Quartal, je 1.000 Einwohner"})
        axis = "Quartal"
        if data.provisional_periods:
            axis += f" ({PROVISIONAL} vorläufig: nicht alle Meldungen freigegeben)"
        chart.set_x_axis({"name": axis})
        chart.set_y_axis(
            {"name": "je 1.000 Einwohner der Kommunen mit Werten", "num_format": "#,##0.0"}
        )
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 960, "height": 420})
        sheet.insert_chart(row + 1, 0, chart)

    def target_groups(self) -> None:
        """Zielgruppen: municipality × target group for indicators broken down by group."""
        data = self.data
        indicators = [i for i in data.indicators if i.by_target_group]
        headers = ["Kommune", "Zielgruppe", *[f"{i.code} – {i.name}" for i in indicators]]
        sheet = self._sheet(
            "Zielgruppen",
            f"Kennzahlen nach Zielgruppe, {self.range_label} (Bewegungsgrößen summiert, "
            f"Bestandsgrößen zum {data.last})",
            headers,
            [24, 40] + [18] * len(indicators),
        )
        row = FIRST_ROW
        for town in data.towns:
            formats = [
                None,
                None,
                *[self._value_format(i, data.town_provisional(town.id, i)) for i in indicators],
            ]
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
        late = [data.total_provisional(i) for i in indicators]
        self._row(
            sheet,
            row,
            [TOTAL, "alle Zielgruppen", *totals],
            [
                self.total_text,
                self.total_text,
                *[self._value_format(i, p, True) for i, p in zip(indicators, late, strict=True)],
            ],
        )
        sheet.autofilter(HEADER_ROW, 0, max(last_row, FIRST_ROW), len(headers) - 1)
        row += 2
        sheet.write_string(row, 0, "Summe je Zielgruppe (alle gewählten Kommunen)", self.label)
        formats = [
            None,
            None,
            *[self._value_format(i, p) for i, p in zip(indicators, late, strict=True)],
        ]
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
        self._footer(sheet, row + 1, [SUM_NOTE])

    def posts(self) -> None:
        """Stellen: FTE by municipality, function and Baustein."""
        data = self.data
        # District-level posts (no municipality) are outside a municipal user's scope.
        district = not is_scoped(self.user, "post")
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
            f"Stellen im Zeitraum {self.range_label} nach Kommune, Funktion und Baustein",
            headers,
            [24, 24, 40, 10, 14, 14, 22],
        )
        integer, two = self.number(exports.INTEGER), self.number(exports.TWO_DECIMALS)
        formats = [None, None, None, integer, two, two, two]
        row = FIRST_ROW
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
        sheet.autofilter(HEADER_ROW, 0, max(row - 1, FIRST_ROW), len(headers) - 1)
        totals = [sum(number(r[k]) or 0 for r in rows) for k in (3, 4, 5, 6)]
        self._row(
            sheet,
            row,
            [TOTAL, "", "", *totals],
            [self.total_text] * 3
            + [
                self.number(exports.INTEGER, total=True),
                *[self.number(exports.TWO_DECIMALS, total=True)] * 3,
            ],
        )
        self._footer(sheet, row + 1, quarterly=False)

    def rooms(self) -> None:
        """Räume: active rooms, barrier-free rooms and seats per municipality."""
        data = self.data
        rooms = data.rooms()
        headers = ["Kommune", "Räume", "davon barrierefrei", "Plätze"]
        sheet = self._sheet("Räume", "Aktive Beratungsräume je Kommune", headers, [24, 10, 18, 10])
        integer = self.number(exports.INTEGER)
        row = FIRST_ROW
        for town in data.towns:
            count, free, seats = rooms.get(town.id, (0, 0, 0))
            self._row(sheet, row, [town.name, count, free, seats], [None] + [integer] * 3)
            row += 1
        sheet.autofilter(HEADER_ROW, 0, row - 1, len(headers) - 1)
        totals = [sum(rooms.get(t.id, (0, 0, 0))[k] for t in data.towns) for k in range(3)]
        self._row(
            sheet,
            row,
            [TOTAL, *totals],
            [self.total_text] + [self.number(exports.INTEGER, total=True)] * 3,
        )
        self._footer(sheet, row + 1, ["Stand: heute (Stammdaten, nicht quartalsweise)."], False)

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
        row = FIRST_ROW
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
        sheet.autofilter(HEADER_ROW, 0, max(row - 1, FIRST_ROW), len(headers) - 1)
        active = sum(1 for p, _, _ in partners if p.active)
        self._row(
            sheet,
            row,
            [f"{len(partners)} Partner, davon {active} aktiv"],
            [self.total_text],
        )
        self._footer(sheet, row + 1, ["Stand: heute (Stammdaten, nicht quartalsweise)."], False)

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
        formats = [self.number(c.num_format) if c.num_format else None for c in columns]
        row = FIRST_ROW
        for cell in data.coverage:
            values = [c.get(cell) for c in columns]
            values[2] = self._shown(("N", cell.municipality.id, cell.group.id), values[2])
            self._row(sheet, row, values, formats)
            row += 1
        sheet.autofilter(HEADER_ROW, 0, max(row - 1, FIRST_ROW), len(columns) - 1)
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
            [self.total_text, self.total_text, self.number(exports.INTEGER, total=True)],
        )
        self._footer(
            sheet,
            row + 1,
            [
                "Lücke: Bedarf erfasst, aber keine Stelle und kein Partner für die Zielgruppe. "
                "Parallelstruktur: zwei oder mehr Partner derselben Art oder Stellen von zwei "
                "oder mehr Anstellungsträgern für dieselbe Zielgruppe in derselben Kommune."
            ],
            quarterly=False,
        )

    def submission_status(self) -> None:
        """Meldestand: municipality × quarter with status and punctuality."""
        data = self.data
        by_cell = data.by_cell
        headers = ["Kommune", *[data.period_label(p) for p in data.periods]]
        sheet = self._sheet(
            "Meldestand",
            f"Meldestand je Kommune und Quartal, {self.range_label}",
            headers,
            [24] + [18] * len(data.periods),
        )
        late = self.cells.format(None, font_color="#9C0006")
        row = FIRST_ROW
        for town in data.towns:
            sheet.write_string(row, 0, town.name)
            for col, period in enumerate(data.periods, start=1):
                sub = by_cell.get((town.id, period.id))
                text = status.label(sub.status if sub else None)
                punctual = on_time(sub)
                if punctual is False:
                    text += " (verspätet)"
                sheet.write_string(row, col, text, late if punctual is False else None)
            row += 1
        sheet.autofilter(HEADER_ROW, 0, row - 1, len(headers) - 1)
        expected = len(data.towns) or 1
        quarter_rates = rates(data.periods, data.towns, by_cell)
        lines = [
            ("Meldequote", lambda p: quarter_rates[p.id].received_share),
            ("Freigabequote", lambda p: len(data.approved[p.id]) / expected),
            ("Pünktlichkeitsquote", lambda p: quarter_rates[p.id].punctual_share),
        ]
        fmt = self.cells.format("0.0 %", bold=True, top=1)
        for label, share in lines:
            values = [share(p) for p in data.periods]
            self._row(sheet, row, [label, *values], [self.total_text] + [fmt] * len(values))
            row += 1
        self._footer(
            sheet,
            row,
            [
                "Meldequote: eingereicht oder freigegeben; pünktlich: erstmals bis zur Frist "
                "eingereicht."
            ],
        )

    def raw_data(self) -> None:
        """Rohdaten: every figure of the range, one row each (not approved: "p")."""
        data = self.data
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
        sheet = self._sheet(
            "Rohdaten",
            f"Rohdaten {self.range_label}: jeder Wert eine Zeile",
            headers,
            [24, 10, 6, 8, 14, 36, 36, 12, 14, 40, 17],
            freeze_columns=0,
        )
        year = self.cells.format("0")
        formats = [None, None, year, None, None, None, None, None, None, None, None]
        value_formats = {
            (whole, late): self.number(exports.INTEGER if whole else exports.TWO_DECIMALS, late)
            for whole in (True, False)
            for late in (True, False)
        }
        write_row = self.cells.write_row
        labels: dict[str | None, str] = {}
        # Room for the notes below the table within Excel's limit of rows.
        last_row = exports.MAX_SHEET_ROWS - 10
        row = HEADER_ROW
        cut = False
        expected = max(data.raw_count(), 1)
        begin, end = self._span
        for (
            town,
            ags,
            y,
            quarter,
            code,
            name,
            group,
            value,
            code_status,
            comment,
            changed,
        ) in data.raw_rows():
            row += 1
            if row % RAW_PROGRESS_ROWS == 0:
                done = min(row - HEADER_ROW, expected)
                self.progress(
                    begin + (end - begin) * done // expected,
                    f"Blatt „Rohdaten“ wird geschrieben ({done:,} von {expected:,} Zeilen)".replace(
                        ",", "."
                    ),
                )
            if row >= last_row:
                cut = True
                break  # Excel's limit; the list export of Kennzahlwerte has every row
            if code_status not in labels:
                labels[code_status] = status.label(code_status)
            if value is not None:
                formats[7] = value_formats[
                    (value == value.to_integral_value(), code_status != APPROVED)
                ]
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
                    labels[code_status],
                    comment,
                    changed,
                ),
                formats,
            )
        sheet.autofilter(HEADER_ROW, 0, max(row - 1 if cut else row, FIRST_ROW), len(headers) - 1)
        notes = [f"{PROVISIONAL}: Wert einer noch nicht freigegebenen Meldung."]
        if cut:
            notes.append("Gekürzt auf Excels Zeilenzahl; alle Werte: Liste „Kennzahlwerte“.")
        self._footer(sheet, row if cut else row + 1, notes)
