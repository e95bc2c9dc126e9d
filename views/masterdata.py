"""Master data the district keeps: municipalities, target groups, rooms, posts,
partners and indicators."""

from __future__ import annotations

from wtforms.validators import Email, NumberRange, Optional, Regexp, ValidationError

from kim_admin.audit import EMPTY
from kim_admin.formatting import de_number
from models import (
    BAUSTEINE,
    EMPLOYER_TYPES,
    FIELDS_OF_ACTION,
    FTE_MAX,
    FTE_MIN,
    INDICATOR_KINDS,
    LEGAL_AREAS,
    PARTNER_KINDS,
    POST_FUNCTIONS,
    POST_STATUSES,
    ROOM_KINDS,
    VALUE_MAX,
)

from .base import SecureModelView
from .fields import NotBefore, NotLessThan, QuarterField, quarter_label

EMAIL = Email("Bitte eine gültige E-Mail-Adresse angeben, z. B. name@beispiel.de.")
NOT_NEGATIVE = NumberRange(min=0, message="Der Wert darf nicht negativ sein.")


class MunicipalityView(SecureModelView):
    """The twelve towns of the Kreis with AGS, population and KIM participation."""

    column_list = ["name", "ags", "population", "kim_participant"]
    column_default_sort = "name"
    column_searchable_list = ["name", "ags"]
    column_filters = ["kim_participant"]
    column_labels = {
        "name": "Name",
        "ags": "Gemeindeschlüssel (AGS)",
        "population": "Einwohner",
        "kim_participant": "KIM-Teilnahme",
    }
    column_descriptions = {"population": "Einwohnerzahl laut IT.NRW (30.06.2023)"}
    form_columns = ["name", "ags", "population", "kim_participant"]
    form_args = {
        "ags": {
            "validators": [
                Regexp(r"^\d{8}$", message="Der Gemeindeschlüssel besteht aus genau 8 Ziffern.")
            ]
        },
        "population": {"validators": [NOT_NEGATIVE]},
    }


class TargetGroupView(SecureModelView):
    """Target groups of the integration work."""

    column_list = ["name", "legal_area", "active", "sort_order"]
    column_default_sort = "sort_order"
    column_searchable_list = ["name"]
    column_filters = ["legal_area", "active"]
    column_choices = {"legal_area": LEGAL_AREAS}
    # Groups outside any Rechtskreis show a dash, not Python's "None".
    column_formatters = {"legal_area": lambda v, c, m, n: m.legal_area or EMPTY}
    column_labels = {
        "name": "Bezeichnung",
        "legal_area": "Rechtskreis",
        "description": "Beschreibung",
        "active": "Aktiv",
        "sort_order": "Reihenfolge",
    }
    form_columns = ["name", "legal_area", "description", "active", "sort_order"]
    form_choices = {"legal_area": LEGAL_AREAS}


class RoomView(SecureModelView):
    """Counselling rooms per municipality."""

    column_list = [
        "name",
        "municipality",
        "kind",
        "seats",
        "barrier_free",
        "availability",
        "active",
    ]
    column_default_sort = "name"
    column_searchable_list = ["name", "address", "availability"]
    column_filters = ["municipality.name", "kind", "barrier_free", "active"]
    column_sortable_list = ["name", ("municipality", "municipality.name"), "kind", "seats"]
    column_choices = {"kind": ROOM_KINDS}
    column_labels = {
        "name": "Bezeichnung",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "address": "Adresse",
        "kind": "Art",
        "seats": "Plätze",
        "barrier_free": "Barrierefrei",
        "availability": "Verfügbarkeit",
        "active": "Aktiv",
    }
    column_descriptions = {"availability": "Freitext, z. B. „Di 9–12 Uhr“"}
    form_columns = [
        "municipality",
        "name",
        "address",
        "kind",
        "seats",
        "barrier_free",
        "availability",
        "active",
    ]
    form_choices = {"kind": ROOM_KINDS}
    form_args = {
        "seats": {"validators": [Optional(), NOT_NEGATIVE]},
    }


class PostView(SecureModelView):
    """KIM posts: employer, function, Baustein, FTE and status."""

    column_list = [
        "title",
        "municipality",
        "employer_type",
        "employer_partner",
        "function",
        "baustein",
        "fte",
        "status",
        "valid_from",
        "valid_until",
    ]
    column_default_sort = "title"
    column_searchable_list = ["title"]
    column_filters = ["municipality.name", "function", "baustein", "status", "employer_type"]
    column_sortable_list = [
        "title",
        ("municipality", "municipality.name"),
        "function",
        "baustein",
        "fte",
        "status",
        "valid_from",
        "valid_until",
    ]
    column_choices = {
        "employer_type": EMPLOYER_TYPES,
        "function": POST_FUNCTIONS,
        "baustein": BAUSTEINE,
        "status": POST_STATUSES,
    }
    column_labels = {
        "title": "Bezeichnung",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "employer_type": "Anstellungsträger",
        "employer_partner": "Träger",
        "function": "Funktion",
        "baustein": "Baustein",
        "fte": "Stellenanteil (VZÄ)",
        "status": "Status",
        "valid_from": "Von",
        "valid_until": "Bis",
        "target_groups": "Zielgruppen",
    }
    # FTE always with two decimals, as in the funding notices (0,50 VZÄ).
    column_formatters = {
        "fte": lambda v, c, m, n: de_number(m.fte, 2),
        "municipality": lambda v, c, m, n: m.municipality or "Kreisebene",
    }
    column_formatters_export = {"municipality": column_formatters["municipality"]}
    column_export_formats = {"fte": "#,##0.00"}
    column_descriptions = {
        "municipality": "Leer = Stelle auf Kreisebene",
        "fte": "0,05 bis 1,00",
        "employer_partner": "Nur wenn ein Kooperationspartner Anstellungsträger ist",
    }
    form_columns = [
        "title",
        "municipality",
        "employer_type",
        "employer_partner",
        "function",
        "baustein",
        "fte",
        "status",
        "valid_from",
        "valid_until",
        "target_groups",
    ]
    form_choices = {
        "employer_type": EMPLOYER_TYPES,
        "function": POST_FUNCTIONS,
        "baustein": BAUSTEINE,
        "status": POST_STATUSES,
    }
    form_args = {
        "fte": {
            "validators": [
                NumberRange(
                    min=FTE_MIN,
                    max=FTE_MAX,
                    message="Der Stellenanteil muss zwischen 0,05 und 1,00 liegen.",
                )
            ],
            "places": 2,
        },
        "valid_until": {"validators": [Optional(), NotBefore("valid_from")]},
    }

    def on_model_change(self, form, model, is_created):
        """Cross-field rules of the employer, mirrored from the database checks."""
        if model.employer_type == "partner" and model.employer_partner is None:
            raise ValidationError("Bitte den Träger (Kooperationspartner) auswählen.")
        if model.employer_type != "partner":
            model.employer_partner = None
        if model.employer_type == "kommune" and model.municipality is None:
            raise ValidationError("Bei Anstellung durch die Kommune bitte die Kommune angeben.")
        super().on_model_change(form, model, is_created)


class PartnerView(SecureModelView):
    """Cooperation partners and the municipalities and target groups they serve."""

    column_list = [
        "name",
        "kind",
        "municipalities",
        "contact_person",
        "written_agreement",
        "active",
    ]
    column_default_sort = "name"
    column_searchable_list = ["name", "contact_person", "email"]
    column_filters = [
        "kind",
        "municipalities.name",
        "target_groups.name",
        "written_agreement",
        "active",
    ]
    column_choices = {"kind": PARTNER_KINDS}
    column_labels = {
        "name": "Name",
        "kind": "Art",
        "municipalities": "Kommunen",
        "municipalities.name": "Kommune",
        "target_groups": "Zielgruppen",
        "target_groups.name": "Zielgruppe",
        "contact_person": "Ansprechperson",
        "email": "E-Mail",
        "phone": "Telefon",
        "cooperation_since": "Kooperation seit",
        "written_agreement": "Schriftliche Vereinbarung",
        "active": "Aktiv",
    }
    column_descriptions = {"municipalities": "Leer = ganzer Kreis"}
    column_formatters = {
        "municipalities": lambda v, c, m, n: ", ".join(map(str, m.municipalities)) or "ganzer Kreis"
    }
    column_formatters_export = column_formatters
    form_columns = [
        "name",
        "kind",
        "municipalities",
        "target_groups",
        "contact_person",
        "email",
        "phone",
        "cooperation_since",
        "written_agreement",
        "active",
    ]
    form_choices = {"kind": PARTNER_KINDS}
    form_args = {"email": {"validators": [Optional(), EMAIL]}}


FIGURE_RANGE = NumberRange(
    0, VALUE_MAX, message=f"Erlaubt sind Werte von 0 bis {de_number(int(VALUE_MAX))}."
)


class IndicatorView(SecureModelView):
    """Indicators of the quarterly monitoring."""

    column_list = [
        "sort_order",
        "code",
        "name",
        "unit",
        "field_of_action",
        "kind",
        "by_target_group",
        "min_value",
        "max_value",
        "valid_from",
        "valid_to",
    ]
    column_default_sort = "sort_order"
    column_searchable_list = ["code", "name"]
    column_filters = ["field_of_action", "kind", "by_target_group"]
    column_choices = {"field_of_action": FIELDS_OF_ACTION, "kind": INDICATOR_KINDS}
    column_labels = {
        "sort_order": "Reihenfolge",
        "code": "Kürzel",
        "name": "Bezeichnung",
        "description": "Beschreibung",
        "unit": "Einheit",
        "field_of_action": "Handlungsfeld",
        "kind": "Art",
        "by_target_group": "Nach Zielgruppen",
        "decimal_places": "Nachkommastellen",
        "min_value": "Minimum",
        "max_value": "Maximum",
        "valid_from": "Gültig ab Quartal",
        "valid_to": "Gültig bis Quartal",
    }
    # Ending an indicator keeps it in the quarters before (entry, template, reports).
    column_formatters = {
        "valid_from": lambda v, c, m, n: quarter_label(m.valid_from) or "seit jeher",
        "valid_to": lambda v, c, m, n: quarter_label(m.valid_to) or "unbefristet",
    }
    column_descriptions = {
        "valid_to": "Letztes Quartal, in dem die Kennzahl gemeldet wird; frühere Berichte "
        "behalten sie",
    }
    form_overrides = {"valid_from": QuarterField, "valid_to": QuarterField}
    form_columns = [
        "code",
        "name",
        "description",
        "unit",
        "field_of_action",
        "kind",
        "by_target_group",
        "decimal_places",
        "min_value",
        "max_value",
        "valid_from",
        "valid_to",
        "sort_order",
    ]
    form_choices = {"field_of_action": FIELDS_OF_ACTION, "kind": INDICATOR_KINDS}
    form_args = {
        "code": {
            "validators": [
                Regexp(
                    r"^[A-Z][A-Z0-9_]*$",
                    message="Kürzel aus Großbuchstaben, Ziffern und _, z. B. CM_NEU.",
                )
            ]
        },
        "decimal_places": {
            "validators": [NumberRange(0, 2, message="0, 1 oder 2 Nachkommastellen.")]
        },
        # A range the figures' column can hold (see models.VALUE_MAX).
        "min_value": {"validators": [Optional(), FIGURE_RANGE]},
        "max_value": {"validators": [Optional(), FIGURE_RANGE, NotLessThan("min_value")]},
        "valid_from": {"blank_text": "– seit jeher –"},
        "valid_to": {"validators": [NotLessThan("valid_from")]},
    }
