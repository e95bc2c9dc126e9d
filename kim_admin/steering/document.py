"""The evaluation report for politics: an accessible PDF (PDF/UA-1) built with WeasyPrint.

The steering group writes the narrative (:data:`models.REPORT_SECTIONS`); the
figures come from :class:`kim_admin.report.ReportData` for one calendar year,
**always as published**: the same options as the workbook "für Veröffentlichung"
(approved reports only, small counts hidden, secondary suppression and the
disclosure audit of :mod:`kim_admin.suppression`). Every figure goes through
:meth:`Published.value` before it reaches a table, a chart or an alt text, so a
hidden value is never drawn: a chart gets ``None`` there and leaves a gap.

Charts are SVG drawn on the server with matplotlib (no browser, no pyplot state),
embedded as images with an alt text and followed by the same figures as a table.
Each generated PDF is stored as a :class:`models.ReportDocument` with the options
and the texts it was made from and is downloaded again byte for byte.

Generation runs in the request (a year of the HSK takes seconds); a background
job can call :func:`generate` unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, render_template
from markupsafe import Markup
from sqlalchemy import func, select

from kim_admin import audit, report, suppression
from kim_admin.extensions import db
from kim_admin.formatting import de_number, local_time
from kim_admin.monitoring import periods as period_lib
from kim_admin.monitoring.workflow import rates
from kim_admin.permissions import role_label
from models import (
    BAUSTEINE,
    REPORT_SECTIONS,
    SECTION_MAX,
    Indicator,
    Measure,
    ReportDocument,
    ReportingPeriod,
    ReportText,
)

from . import workspace

#: Shown for a value the publication hides (as in the workbook).
HIDDEN = suppression.SUPPRESSED
#: Shown for exactly nothing (0), as in the workbook's number formats.
NOTHING = "–"
#: Shown where a municipality reported no figure.
NO_FIGURE = "k. A."
PROVISIONAL = "p"


class DocumentError(ValueError):
    """The chosen options cannot make a report (German message)."""


@dataclass(frozen=True)
class DocumentOptions:
    """What a report for politics covers: one calendar year and the municipalities."""

    year: int
    municipality_ids: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"year": self.year, "municipality_ids": list(self.municipality_ids)}


def years() -> list[int]:
    """Years whose four quarters exist (a published report covers exactly one), newest first."""
    rows = db.session.execute(
        select(ReportingPeriod.year)
        .group_by(ReportingPeriod.year)
        .having(func.count(ReportingPeriod.id) == 4)
        .order_by(ReportingPeriod.year.desc())
    )
    return [year for (year,) in rows]


def report_options(options: DocumentOptions) -> report.ReportOptions:
    """The workbook options whose published figures the PDF shows."""
    first = period_lib.find(options.year, 1)
    last = period_lib.find(options.year, 4)
    if first is None or last is None:
        raise DocumentError(f"Für {options.year} sind nicht alle vier Quartale angelegt.")
    config = current_app.config
    return report.ReportOptions(
        first.id,
        last.id,
        tuple(options.municipality_ids),
        approved_only=True,
        include_raw=False,
        publish=True,
        threshold=config["KIM_SUPPRESSION_THRESHOLD"],
        width=config.get("KIM_SUPPRESSION_WIDTH"),
    )


# --- the narrative -----------------------------------------------------------------------


def current_texts() -> dict[str, str]:
    """The saved narrative, one text per section (empty where none is written)."""
    saved = dict(db.session.execute(select(ReportText.section, ReportText.body)).all())
    return {code: saved.get(code, "") for code, _ in REPORT_SECTIONS}


def clean_texts(texts: Mapping[str, Any]) -> dict[str, str]:
    """The known sections only, as text, line ends unified, each at most SECTION_MAX long."""
    result = {}
    for code, label in REPORT_SECTIONS:
        text = str(texts.get(code) or "").replace("\r\n", "\n").strip()
        if len(text) > SECTION_MAX:
            raise DocumentError(f"{label}: höchstens {de_number(SECTION_MAX)} Zeichen.")
        result[code] = text
    return result


def save_texts(texts: Mapping[str, Any], user: Any) -> dict[str, str]:
    """Store the narrative (the one write path of the report texts); the caller commits."""
    texts = clean_texts(texts)
    rows = {r.section: r for r in db.session.scalars(select(ReportText))}
    for code, body in texts.items():
        row = rows.get(code)
        if row is None:
            row = ReportText(section=code)
            db.session.add(row)
        if row.body != body:
            row.body = body
        row.updated_by_id = getattr(user, "id", None)
    return texts


def paragraphs(text: str) -> Markup:
    """Plain text as HTML: blank lines separate paragraphs, lines starting "- " are lists."""
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    html = []
    for block in blocks:
        lines = [line.strip() for line in block.strip().split("\n")]
        if all(line.startswith(("- ", "• ")) for line in lines):
            items = Markup("").join(
                Markup("<li>{}</li>").format(line[2:].strip()) for line in lines
            )
            html.append(Markup("<ul>{}</ul>").format(items))
        else:
            html.append(Markup("<p>{}</p>").format(Markup("<br>").join(lines)))
    return Markup("\n").join(html)


# --- the published figures ------------------------------------------------------------------


def fmt(value: float | None, places: int = 0) -> str:
    """A figure as the workbook shows it: 0 as "–", German separators."""
    if value is None:
        return NO_FIGURE
    if isinstance(value, str):
        return value
    if value == 0:
        return NOTHING
    return de_number(value, places)


@dataclass
class Cell:
    """One published figure: its text, and its value (None where hidden or missing)."""

    text: str
    value: float | None = None
    provisional: bool = False

    def __str__(self) -> str:
        return (
            f"{self.text} {PROVISIONAL}"
            if self.provisional and self.value is not None
            else self.text
        )


@dataclass
class Chart:
    """A chart as drawn: the values it was given (never a hidden one), SVG and alt text."""

    title: str
    categories: list[str]
    series: dict[str, list[float | None]]
    svg: str = ""
    alt: str = ""
    unit: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg.encode()).decode()


@dataclass
class Published:
    """The figures of a :class:`ReportData` as the published workbook shows them."""

    data: report.ReportData
    hidden: set = field(init=False)

    def __post_init__(self) -> None:
        self.hidden = self.data.hidden_cells()

    def value(self, key: tuple, value: float | None, places: int = 0, late: bool = False) -> Cell:
        """``value`` unless the publication hides ``key``."""
        if key in self.hidden:
            return Cell(HIDDEN)
        return Cell(fmt(value, places), value, late)

    def total_rate(self, indicator: Indicator) -> Cell:
        """As ``ReportWriter._total_rate``: a flow's sum of quarterly rates over differing
        populations is a second equation the audit does not model, so it is hidden."""
        data = self.data
        places = 2 if indicator.decimal_places else 1
        if self.hidden and indicator.kind == "flow" and not indicator.decimal_places:
            populations = {data.series_population.get((p.id, indicator.id)) for p in data.periods}
            if len(populations) > 1:
                return Cell(HIDDEN)
        late = data.total_provisional(indicator)
        return self.value(("KT", indicator.id), data.total_rate(indicator), places, late)


def _places(indicator: Indicator) -> int:
    return 2 if indicator.decimal_places else 0


def figures_table(pub: Published) -> dict[str, Any]:
    """Kennzahlen: municipality × indicator (values and per 1,000), with the totals row."""
    data = pub.data
    rows = []
    for town in data.towns:
        values, rates_ = [], []
        for i in data.indicators:
            key = ("K", town.id, i.id)
            exact = data.range_values.get((town.id, i.id))
            late = data.town_provisional(town.id, i)
            rate = exact / town.population * 1000 if exact is not None and town.population else None
            values.append(pub.value(key, exact, _places(i), late))
            rates_.append(pub.value(key, rate, 2 if i.decimal_places else 1, late))
        rows.append({"town": town, "values": values, "rates": rates_})
    totals = [
        pub.value(("KT", i.id), data.total(i), _places(i), data.total_provisional(i))
        for i in data.indicators
    ]
    total_rates = [pub.total_rate(i) for i in data.indicators]
    return {
        "rows": rows,
        "totals": totals,
        "total_rates": total_rates,
        "population": sum(t.population for t in data.towns),
    }


def series_table(pub: Published) -> list[dict[str, Any]]:
    """Zeitreihe: each quarter's total over the municipalities, as published."""
    data = pub.data
    rows = []
    for period in data.periods:
        late = data.is_provisional(period)
        rows.append(
            {
                "label": data.period_label(period),
                "reported": len(data.reported[period.id]),
                "values": [
                    pub.value(
                        data.series_key(period, i),
                        data.series.get((period.id, i.id)),
                        _places(i),
                        late,
                    )
                    for i in data.indicators
                ],
            }
        )
    return rows


def series_charts(pub: Published, table: list[dict[str, Any]]) -> list[Chart]:
    """One line chart per indicator over the quarters, from the published table only."""
    data = pub.data
    labels = [row["label"] for row in table]
    charts = []
    for n, indicator in enumerate(data.indicators):
        values = [row["values"][n].value for row in table]
        chart = Chart(
            f"{indicator.name} ({indicator.code}) je Quartal",
            labels,
            {indicator.code: values},
            unit=indicator.unit or "",
        )
        chart.svg = line_chart_svg(chart, _places(indicator))
        chart.alt = alt_text(chart, _places(indicator))
        charts.append(chart)
    return charts


def posts_by_baustein(data: report.ReportData) -> tuple[list[dict[str, Any]], Chart]:
    """Posts and FTE per Baustein (Kreis level included), and their bar chart."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for _town, _function, baustein, count, fte, filled, vacant in data.posts(True):
        row = totals[baustein]
        row[0] += count
        row[1] += float(fte or 0)
        row[2] += float(filled or 0)
        row[3] += float(vacant or 0)
    rows = [
        {
            "label": label,
            "count": int(totals[code][0]),
            "fte": totals[code][1],
            "filled": totals[code][2],
            "vacant": totals[code][3],
        }
        for code, label in BAUSTEINE
        if code in totals
    ]
    chart = Chart(
        "Vollzeitäquivalente je Baustein",
        [r["label"].split(" – ")[0] for r in rows],
        {
            "besetzt": [r["filled"] for r in rows],
            "vakant/ausgeschrieben": [r["vacant"] for r in rows],
        },
        unit="VZÄ",
    )
    chart.svg = bar_chart_svg(chart)
    chart.alt = alt_text(chart, 2)
    return rows, chart


def coverage_rows(pub: Published) -> list[dict[str, Any]]:
    """The cells of the coverage matrix with a gap or a parallel structure."""
    rows = []
    for cell in pub.data.coverage:
        if not cell.flags:
            continue
        need = pub.value(("N", cell.municipality.id, cell.group.id), cell.need)
        rows.append({"cell": cell, "need": need})
    return rows


def reporting_rates(data: report.ReportData) -> list[dict[str, Any]]:
    """Per quarter: reported, approved and on time, as shares of the municipalities."""
    quarter = rates(data.periods, data.towns, data.by_cell)
    expected = len(data.towns) or 1
    return [
        {
            "label": data.period_label(p),
            "received": quarter[p.id].received_share,
            "approved": len(data.approved[p.id]) / expected,
            "punctual": quarter[p.id].punctual_share,
        }
        for p in data.periods
    ]


def percent(share: float) -> str:
    return de_number(share * 100, 1) + " %"


# --- charts -----------------------------------------------------------------------------

#: Colours with at least 3:1 contrast against white (WCAG 1.4.11), told apart by markers too.
COLOURS = ["#1f4e79", "#b35900", "#2e7d32", "#6a1b9a", "#00695c", "#8b1a1a"]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def _figure(width: float = 6.3, height: float = 2.6) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    figure.set_layout_engine("constrained")
    return figure


def _german_axis(axis: Any, places: int) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: de_number(v, places)))
    axis.spines[["top", "right"]].set_visible(False)
    axis.grid(axis="y", color="#cccccc", linewidth=0.5)


def _svg(figure: Any) -> str:
    """The figure as SVG text (text as paths: no fonts needed; no date, so reproducible)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "kim-admin"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def line_chart_svg(chart: Chart, places: int = 0) -> str:
    """A line chart; ``None`` (hidden or missing) is a gap in the line, never a point."""
    figure = _figure()
    axis = figure.add_subplot()
    x = list(range(len(chart.categories)))
    for n, (name, values) in enumerate(chart.series.items()):
        y = [math.nan if v is None else v for v in values]
        axis.plot(x, y, color=COLOURS[n % 6], marker=MARKERS[n % 6], linewidth=1.6, label=name)
    axis.set_xticks(x, chart.categories)
    axis.set_ylim(bottom=0)
    axis.set_ylabel(chart.unit)
    _german_axis(axis, places)
    return _svg(figure)


def bar_chart_svg(chart: Chart) -> str:
    """Stacked bars, one colour and hatch per series."""
    figure = _figure()
    axis = figure.add_subplot()
    x = list(range(len(chart.categories)))
    bottom = [0.0] * len(x)
    hatches = ["", "//", "..", "xx"]
    for n, (name, values) in enumerate(chart.series.items()):
        heights = [v or 0 for v in values]
        axis.bar(
            x,
            heights,
            bottom=bottom,
            color=COLOURS[n % 6],
            hatch=hatches[n % 4],
            edgecolor="white",
            label=name,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axis.set_xticks(x, chart.categories)
    axis.set_ylabel(chart.unit)
    axis.legend(frameon=False)
    _german_axis(axis, 2)
    return _svg(figure)


def alt_text(chart: Chart, places: int) -> str:
    """What the chart shows, in words, with the values as published."""
    parts = []
    for name, values in chart.series.items():
        shown = [
            f"{label}: {fmt(v, places) if v is not None else 'nicht veröffentlicht'}"
            for label, v in zip(chart.categories, values, strict=True)
        ]
        parts.append(f"{name} – " + "; ".join(shown))
    unit = f" ({chart.unit})" if chart.unit else ""
    return f"Diagramm: {chart.title}{unit}. " + ". ".join(parts) + "."


# --- the document ---------------------------------------------------------------------


def context(options: DocumentOptions, texts: Mapping[str, str], user: Any) -> dict[str, Any]:
    """Everything the document template shows, figures as published."""
    try:
        data = report.ReportData(report_options(options), user)
    except report.ReportError as exc:
        raise DocumentError(str(exc)) from exc
    pub = Published(data)
    series = series_table(pub)
    posts, posts_chart = posts_by_baustein(data)
    title = f"Evaluationsbericht Kommunales Integrationsmanagement {options.year}"
    return {
        "title": title,
        "district": report.DISTRICT,
        "year": options.year,
        "data": data,
        "texts": clean_texts(texts),
        "sections": dict(REPORT_SECTIONS),
        "figures": figures_table(pub),
        "series": series,
        "charts": series_charts(pub, series),
        "posts": posts,
        "posts_chart": posts_chart,
        "coverage": coverage_rows(pub),
        "gaps": sum(1 for c in data.coverage if c.gap),
        "parallels": sum(1 for c in data.coverage if c.parallel),
        "measures": (measures := workspace.measures_for_report()),
        "status_counts": measures_by_status(measures),
        "problems": workspace.problem_overview(user, options.year),
        "rates": reporting_rates(data),
        "threshold": data.options.threshold,
        "created": local_time(datetime.now(UTC)),
        "creator": f"{(user.name or '').strip() or user.email} ({role_label(user.role)})",
        "paragraphs": paragraphs,
        "percent": percent,
        "fmt": fmt,
        "source": report.SOURCE,
    }


def render_html(ctx: Mapping[str, Any]) -> str:
    """The document as one HTML page (the PDF's source; the preview shows its body)."""
    return render_template("steering/document.html", **ctx)


def render_pdf(html: str) -> bytes:
    """The HTML as a tagged PDF/UA-1 document (A4, page numbers, outline)."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # Only the embedded data: URIs of the charts: never the network, never a file.
    fetcher = URLFetcher(allowed_protocols=["data"], fail_on_errors=True)
    document = HTML(string=html, url_fetcher=fetcher)
    return document.write_pdf(pdf_variant="pdf/ua-1")


def build(
    options: DocumentOptions, texts: Mapping[str, Any], user: Any
) -> tuple[dict[str, Any], bytes]:
    """The context (figures as published) and the PDF drawn from it."""
    ctx = context(options, texts, user)
    return ctx, render_pdf(render_html(ctx))


def generate(options: DocumentOptions, texts: Mapping[str, Any], user: Any) -> ReportDocument:
    """Save the narrative, render the PDF and store it as the next version (caller commits)."""
    texts = save_texts(texts, user)
    ctx, pdf = build(options, texts, user)
    version = (db.session.scalar(select(func.max(ReportDocument.version))) or 0) + 1
    data: report.ReportData = ctx["data"]
    parameters = {
        **options.as_dict(),
        "first_period": str(data.first),
        "last_period": str(data.last),
        "municipalities": [t.name for t in data.towns],
        "threshold": data.options.threshold,
        "width": data.protection_width,
        "approved_only": True,
        "published": True,
    }
    document = ReportDocument(
        version=version,
        created_by_id=getattr(user, "id", None),
        title=ctx["title"],
        parameters=parameters,
        texts=texts,
        sha256=hashlib.sha256(pdf).hexdigest(),
        size=len(pdf),
        pdf=pdf,
    )
    db.session.add(document)
    db.session.flush()
    audit.record(
        "create",
        "report_document",
        document.id,
        new={"version": version, "sha256": document.sha256, "size": len(pdf), **parameters},
    )
    return document


def versions() -> Sequence[ReportDocument]:
    """Every stored PDF, newest first (without the files themselves)."""
    return db.session.scalars(select(ReportDocument).order_by(ReportDocument.version.desc())).all()


def measures_by_status(measures: Sequence[Measure]) -> dict[str, int]:
    """How many measures have each status label."""
    counts: dict[str, int] = defaultdict(int)
    for measure in measures:
        counts[measure.status_label] += 1
    return dict(counts)
