"""Förderung: grants per post and year, vacancies, the funding-year view and its export."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

from flask import Response, abort, request
from flask_admin import expose
from flask_admin.model.form import InlineFormAdmin
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField
from wtforms.validators import NumberRange, Optional, ValidationError

from kim_admin import exports, funding
from kim_admin.formatting import de_number
from kim_admin.permissions import EXPORT, READ
from models import (
    AMOUNT_MAX,
    FTE_MAX,
    FTE_MIN,
    FUNDED_BAUSTEINE,
    FUNDING_YEAR_MAX,
    FUNDING_YEAR_MIN,
    FundingForward,
)
from models._common import utcnow

from .base import SecureModelView, SecureView, record_export
from .fields import NotBefore

AMOUNT_RANGE = NumberRange(
    0, AMOUNT_MAX, message=f"Erlaubt sind Beträge von 0 bis {de_number(AMOUNT_MAX)} EUR."
)


def _this_year() -> int:
    return date.today().year


def _euro(value) -> str:
    return f"{de_number(value, 2)} €"


class ForwardInline(InlineFormAdmin):
    """Forwarded amounts, entered with their grant."""

    form_columns = ["id", "municipality", "partner", "amount", "forwarded_on", "reference"]
    form_label = "Weiterleitung"
    column_labels = {
        "municipality": "an Kommune",
        "partner": "an Träger",
        "amount": "Betrag (EUR)",
        "forwarded_on": "Datum",
        "reference": "Aktenzeichen / Vermerk",
    }
    form_args = {
        "amount": {
            "validators": [
                NumberRange(
                    Decimal("0.01"),
                    AMOUNT_MAX,
                    message=f"Erlaubt sind Beträge von 0,01 bis {de_number(AMOUNT_MAX)} EUR.",
                )
            ]
        }
    }


class PostFundingView(SecureModelView):
    """Grants per post and funding year: Baustein, FTE, period, amount, notice, forwards."""

    column_list = [
        "year",
        "post",
        "post.municipality",
        "baustein",
        "funded_fte",
        "funded_from",
        "funded_until",
        "grant_amount",
        "forwarded",
        "notice_number",
        "notice_date",
    ]
    column_details_list = [*column_list, "forwards", "notes"]
    column_default_sort = [("year", True), ("post.title", False)]
    column_searchable_list = ["notice_number", "post.title"]
    # No municipality filter: its list of names would show other towns to a municipal user.
    column_filters = ["year", "baustein", "post.title", "notice_number"]
    column_sortable_list = [
        "year",
        ("post", "post.title"),
        "baustein",
        "funded_fte",
        "funded_from",
        "funded_until",
        "grant_amount",
        "notice_number",
        "notice_date",
    ]
    column_choices = {"baustein": FUNDED_BAUSTEINE}
    column_labels = {
        "year": "Förderjahr",
        "post": "Stelle",
        "post.title": "Stelle",
        "post.municipality": "Kommune",
        "baustein": "Baustein",
        "funded_fte": "VZÄ gefördert",
        "funded_from": "Gefördert von",
        "funded_until": "Gefördert bis",
        "grant_amount": "Bewilligt (EUR)",
        "forwarded": "Weitergeleitet (EUR)",
        "notice_number": "Bescheid-Nr.",
        "notice_date": "Bescheid vom",
        "notes": "Anmerkungen",
        "forwards": "Weiterleitungen",
    }
    column_descriptions = {
        "funded_fte": "0,05 bis 1,00",
        "funded_from": "Förderzeitraum innerhalb des Förderjahres",
        "grant_amount": "Für diese Stelle im Förderjahr bewilligter Betrag",
    }
    column_formatters = {
        "post.municipality": lambda v, c, m, n: m.post.municipality or "Kreisebene",
        "funded_fte": lambda v, c, m, n: de_number(m.funded_fte, 2),
        "grant_amount": lambda v, c, m, n: _euro(m.grant_amount),
        "forwarded": lambda v, c, m, n: _euro(m.forwarded),
        "forwards": lambda v, c, m, n: "; ".join(
            f"{f.recipient}: {_euro(f.amount)}" for f in m.forwards
        ),
    }
    column_formatters_export = {
        "post.municipality": column_formatters["post.municipality"],
        "forwarded": lambda v, c, m, n: m.forwarded,
    }
    column_export_formats = {
        "funded_fte": exports.TWO_DECIMALS,
        "grant_amount": exports.TWO_DECIMALS,
        "forwarded": exports.TWO_DECIMALS,
    }
    form_columns = [
        "post",
        "year",
        "baustein",
        "funded_fte",
        "funded_from",
        "funded_until",
        "grant_amount",
        "notice_number",
        "notice_date",
        "notes",
    ]
    form_choices = {"baustein": FUNDED_BAUSTEINE}
    form_args = {
        "year": {
            "default": _this_year,
            "validators": [
                NumberRange(
                    FUNDING_YEAR_MIN,
                    FUNDING_YEAR_MAX,
                    message=f"Jahr zwischen {FUNDING_YEAR_MIN} und {FUNDING_YEAR_MAX}.",
                )
            ],
        },
        "funded_fte": {
            "validators": [
                NumberRange(FTE_MIN, FTE_MAX, message="Stellenanteil von 0,05 bis 1,00.")
            ]
        },
        "funded_from": {"default": lambda: date(_this_year(), 1, 1)},
        "funded_until": {
            "default": lambda: date(_this_year(), 12, 31),
            "validators": [NotBefore("funded_from")],
        },
        "grant_amount": {"validators": [AMOUNT_RANGE]},
        "notice_date": {"validators": [Optional()]},
    }
    inline_models = [ForwardInline(FundingForward)]

    def on_model_change(self, form, model, is_created):
        """The funded period lies in the funding year; each forward names one recipient,
        and a town only if the post belongs to it (mirrors and extends the checks)."""
        if model.funded_from.year != model.year or model.funded_until.year != model.year:
            raise ValidationError(
                f"Der Förderzeitraum muss im Förderjahr {model.year} liegen "
                "(je Förderjahr ein Eintrag)."
            )
        for forward in model.forwards:
            if (forward.municipality is None) == (forward.partner is None):
                raise ValidationError(
                    "Jede Weiterleitung geht entweder an eine Kommune oder an einen Träger."
                )
            town = model.post.municipality if model.post else None
            if (
                forward.municipality is not None
                and town is not None
                and (forward.municipality != town)
            ):
                raise ValidationError(
                    f"Mittel einer Stelle in {town} können nur an {town} "
                    "oder an einen Träger weitergeleitet werden."
                )
        if model.forwarded > model.grant_amount:
            raise ValidationError("Es kann nicht mehr weitergeleitet werden als bewilligt.")
        super().on_model_change(form, model, is_created)


class PostVacancyView(SecureModelView):
    """Periods in which a post was not filled (they reduce the months filled)."""

    column_list = ["post", "post.municipality", "vacant_from", "vacant_until", "note"]
    column_default_sort = [("vacant_from", True)]
    column_searchable_list = ["post.title", "note"]
    column_filters = ["post.title", "vacant_from", "vacant_until"]
    column_sortable_list = [("post", "post.title"), "vacant_from", "vacant_until"]
    column_labels = {
        "post": "Stelle",
        "post.title": "Stelle",
        "post.municipality": "Kommune",
        "vacant_from": "Vakant ab",
        "vacant_until": "Vakant bis",
        "note": "Anmerkung",
    }
    column_descriptions = {"vacant_until": "Leer = noch vakant"}
    column_formatters = {
        "post.municipality": lambda v, c, m, n: m.post.municipality or "Kreisebene",
    }
    column_formatters_export = {"post.municipality": column_formatters["post.municipality"]}
    form_columns = ["post", "vacant_from", "vacant_until", "note"]
    form_args = {"vacant_until": {"validators": [Optional(), NotBefore("vacant_from")]}}


class FundingYearForm(FlaskForm):
    """The funding year shown (a GET form)."""

    class Meta:
        csrf = False  # reading only; the year travels in the URL

    year = SelectField("Förderjahr", coerce=int)


class FundingYearView(SecureView):
    """Förderjahr: per Baustein and post, funded against filled, granted against forwarded."""

    permission_resource = "funding_year"
    view_permissions = {"index": READ, "export": EXPORT}

    def _year(self) -> tuple[FundingYearForm, int]:
        form = FundingYearForm(request.args)
        known = funding.years(current_user)
        default = funding.default_year(current_user)
        choices = sorted({*known, default, _this_year()}, reverse=True)
        form.year.choices = [(y, str(y)) for y in choices]
        if not request.args.get("year") or not form.validate():
            form.year.data = default
            form.year.errors = []
        return form, form.year.data

    @expose("/")
    def index(self):
        """The funding year with its totals."""
        form, year = self._year()
        return self.render(
            "kim/funding.html",
            form=form,
            data=funding.funding_year(year, current_user),
            rule=funding.MONTH_RULE,
            r=funding.round2,
            can_export=self.allowed(EXPORT),
        )

    @expose("/export/<export_type>/")
    def export(self, export_type: str):
        """The Zahlenmäßiger Nachweis of the year as xlsx."""
        if export_type != "xlsx":
            abort(404)
        form, year = self._year()
        # Recorded and committed before reading: a commit expires what was read.
        record_export("funding_year", export_type, year=year)
        data = funding.funding_year(year, current_user)
        buffer = io.BytesIO()
        funding.nachweis_workbook(data, buffer, current_user.name, utcnow())
        response = Response(buffer.getvalue(), mimetype=exports.XLSX_MIMETYPE)
        response.headers["Content-Disposition"] = (
            f'attachment; filename="Zahlenmaessiger_Nachweis_{year}.xlsx"'
        )
        return response
