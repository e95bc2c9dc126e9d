"""Users and the audit trail (district admin only)."""

from __future__ import annotations

from flask_login import current_user
from markupsafe import Markup
from wtforms import PasswordField
from wtforms.validators import Email, Optional, ValidationError

from kim_admin import audit
from kim_admin.accounts import PASSWORD_MIN_LENGTH, AccountError, check_password_rules
from kim_admin.permissions import MUNICIPAL_STAFF, ROLES

from .base import SecureModelView


class UserView(SecureModelView):
    """Accounts of all three roles; passwords are only ever stored hashed."""

    column_list = ["email", "name", "role", "municipality", "active", "last_login_at"]
    column_default_sort = "email"
    column_searchable_list = ["email", "name"]
    column_filters = ["role", "municipality.name", "active"]
    column_choices = {"role": ROLES}
    column_labels = {
        "email": "E-Mail",
        "name": "Name",
        "role": "Rolle",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "active": "Aktiv",
        "last_login_at": "Letzte Anmeldung",
        "created_at": "Angelegt am",
        "new_password": "Neues Passwort",
    }
    column_details_list = [
        "email",
        "name",
        "role",
        "municipality",
        "active",
        "created_at",
        "last_login_at",
    ]
    column_export_list = column_details_list
    form_columns = ["email", "name", "role", "municipality", "active", "new_password"]
    form_choices = {"role": ROLES}
    form_extra_fields = {
        "new_password": PasswordField(
            "Neues Passwort",
            validators=[Optional()],
            description=f"Mindestens {PASSWORD_MIN_LENGTH} Zeichen. Beim Bearbeiten leer "
            "lassen, um das Passwort nicht zu ändern.",
        )
    }
    form_args = {
        "email": {
            "validators": [Email("Bitte eine gültige E-Mail-Adresse angeben.")],
            # Stored lower-case, so the generated unique check is case-insensitive.
            "filters": [lambda v: v.strip().lower() if v else v],
        },
        "municipality": {"description": "Pflicht für die Rolle Kommune"},
    }

    def on_model_change(self, form, model, is_created):
        """Check the role rules and hash a new password."""
        if model.role == MUNICIPAL_STAFF and model.municipality is None:
            raise ValidationError("Benutzer der Rolle Kommune brauchen eine Kommune.")
        if not is_created and model.id == current_user.id:
            # Nobody changes their own role or municipality, or locks themselves out.
            if form.role.object_data != model.role:
                raise ValidationError("Die eigene Rolle kann nicht geändert werden.")
            if form.municipality.object_data != model.municipality:
                raise ValidationError("Die eigene Kommune kann nicht geändert werden.")
            if not model.active:
                raise ValidationError("Das eigene Konto kann nicht deaktiviert werden.")
        password = form.new_password.data
        if is_created and not password:
            raise ValidationError("Bitte ein Passwort für den neuen Benutzer vergeben.")
        if password:
            try:
                check_password_rules(password, [model.email, model.name])
            except AccountError as exc:
                raise ValidationError(str(exc)) from exc
            model.set_password(password)
        super().on_model_change(form, model, is_created)

    def on_model_delete(self, model):
        """The logged-in user cannot delete their own account."""
        if model.id == current_user.id:
            raise ValidationError("Das eigene Konto kann nicht gelöscht werden.")


class AuditEventView(SecureModelView):
    """The append-only audit trail; the permission table grants no writes."""

    column_list = [
        "created_at",
        "user_email",
        "action",
        "object_type",
        "object_id",
        "municipality",
        "old_values",
        "new_values",
    ]
    column_default_sort = ("created_at", True)
    column_filters = ["user_email", "action", "object_type", "municipality.name", "created_at"]
    column_searchable_list = ["user_email", "object_type", "object_id"]
    column_labels = {
        "created_at": "Zeitpunkt",
        "user_email": "Benutzer",
        "action": "Aktion",
        "object_type": "Objekttyp",
        "object_id": "Objekt-ID",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "old_values": "Alte Werte",
        "new_values": "Neue Werte",
    }

    # German words for codes, and old/new values as a small table instead of a Python dict.
    column_choices = {
        "action": sorted(audit.action_labels().items(), key=lambda item: item[1]),
        "object_type": sorted(audit.OBJECT_LABELS.items(), key=lambda item: item[1]),
    }

    def _values(self, context, model, name):
        """``{"seats": 12}`` as a table: Plätze | 12, with the column labels of the data's view."""
        values = getattr(model, name)
        if not values:
            return audit.EMPTY
        if not isinstance(values, dict):
            return audit.display_value(values)
        labels = self._column_labels(model.object_type)
        row = Markup('<tr><th scope="row">{}</th><td>{}</td></tr>')
        rows = Markup("").join(
            row.format(labels.get(key, key), audit.display_value(value))
            for key, value in values.items()
        )
        caption = "Alte Werte" if name == "old_values" else "Neue Werte"
        return Markup(
            '<table class="kim-values"><caption class="sr-only">{}</caption>{}</table>'
        ).format(caption, rows)

    def _column_labels(self, object_type: str | None) -> dict[str, str]:
        """The German column labels of the view that shows ``object_type`` rows."""
        for view in self.admin._views:
            if getattr(view, "endpoint", None) == object_type:
                return {**COMMON_LABELS, **(getattr(view, "column_labels", None) or {})}
        return COMMON_LABELS

    column_formatters = {
        "action": lambda view, context, model, name: audit.action_label(model.action),
        "object_type": lambda view, context, model, name: audit.object_label(model.object_type),
        "old_values": _values,
        "new_values": _values,
    }
    column_formatters_detail = column_formatters


#: Labels of columns many tables share (ids of related rows, bookkeeping).
COMMON_LABELS = {
    "id": "ID",
    "name": "Name",
    "municipality_id": "Kommune (ID)",
    "target_group_id": "Zielgruppe (ID)",
    "indicator_id": "Kennzahl (ID)",
    "period_id": "Meldezeitraum (ID)",
    "period": "Meldezeitraum",
    "user_id": "Benutzer (ID)",
    "created_at": "Angelegt am",
    "created_by_id": "Angelegt von (ID)",
    "value": "Wert",
    "comment": "Kommentar",
    "status": "Status",
    "active": "Aktiv",
    "by_target_group": "Nach Zielgruppen",
    "exception_until": "Ausnahme bis",
    "return_reason": "Grund der Rückgabe",
    "cells": "Zellen",
    "tables": "Tabellen",
    "password_hash": "Passwort",
    "export_type": "Format",
    "publish": "Veröffentlichung",
}
