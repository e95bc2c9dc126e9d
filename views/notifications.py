"""E-mail notifications: each user's own choice, and the outbox for the district."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask_admin import expose
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SubmitField

from kim_admin.extensions import db
from kim_admin.notifications import events
from kim_admin.permissions import DISTRICT_ADMIN, MUNICIPAL_STAFF, READ
from models import NotificationPreference

from .base import SecureModelView, SecureView


class PreferenceForm(FlaskForm):
    """The two switchable groups of mails; returns and other must-know mails are not."""

    deadline_reminders = BooleanField(
        "Erinnerungen an Fristen",
        description="Quartal geöffnet, Erinnerung vor der Meldefrist, Frist überschritten.",
    )
    status_updates = BooleanField(
        "Statusmeldungen",
        description="Meldung eingereicht (Kreisverwaltung), Meldung freigegeben (Kommune).",
    )
    submit = SubmitField("Speichern")


class NotificationSettingsView(SecureView):
    """Which e-mails one receives (one's own setting only)."""

    permission_resource = "account"
    # Saving needs no more than access to one's own account, like the password page.
    view_permissions = {"index": READ}

    def is_visible(self) -> bool:
        return False  # reached from the account page

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """Show and save the user's choice; no row yet means everything is on."""
        user = current_user._get_current_object()
        preference = db.session.get(NotificationPreference, user.id)
        form = PreferenceForm(
            obj=preference or NotificationPreference(deadline_reminders=True, status_updates=True)
        )
        if form.validate_on_submit():
            if preference is None:
                preference = NotificationPreference(user_id=user.id)
                db.session.add(preference)
            form.populate_obj(preference)
            db.session.commit()
            flash("Ihre Einstellungen für Benachrichtigungen wurden gespeichert.", "success")
            return redirect(url_for(".index"))
        must_know = [k for k in events.KIND_LIST if k.switch is None]
        return self.render(
            "notifications/settings.html",
            form=form,
            must_know=must_know,
            # The steering group takes no part in the reporting cycle's mails.
            receives=user.role in (DISTRICT_ADMIN, MUNICIPAL_STAFF),
        )


class NotificationView(SecureModelView):
    """The e-mail outbox, read-only: what went out, what waits, what failed and why."""

    permission_resource = "notification"
    column_list = [
        "created_at",
        "kind",
        "user.email",
        "municipality",
        "period",
        "state",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
    ]
    column_details_list = [*column_list, "reason", "due", "key", "claimed_at"]
    column_default_sort = ("id", True)
    column_filters = ["state", "kind", "municipality.name"]
    column_choices = {"kind": events.KINDS, "state": events.STATES}
    column_labels = {
        "created_at": "Angelegt",
        "kind": "Anlass",
        "user.email": "Empfänger",
        "municipality": "Kommune",
        "municipality.name": "Kommune",
        "period": "Quartal",
        "state": "Status",
        "attempts": "Versuche",
        "next_attempt_at": "Nächster Versuch",
        "sent_at": "Gesendet",
        "last_error": "Letzter Fehler",
        "reason": "Grund",
        "due": "Frist",
        "key": "Schlüssel",
        "claimed_at": "Versand begonnen",
    }
