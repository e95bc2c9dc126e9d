"""The start page and the user's own account page."""

from __future__ import annotations

from flask import current_app, flash, jsonify, redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from sqlalchemy import func, literal_column, select
from wtforms import PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from kim_admin import audit, caching, dashboard, sessions
from kim_admin.accounts import PASSWORD_MIN_LENGTH, AccountError, check_password_rules
from kim_admin.auth import claim_password_check, give_back_password_check
from kim_admin.extensions import db
from kim_admin.formatting import local_time
from kim_admin.permissions import READ, apply_scope, can, is_scoped, role_label
from models import MonitoringEntry, Municipality, Partner, Post, Room

from .base import AccessMixin, CappedCount, SecureModelView, SecureView


class HomeView(AccessMixin, AdminIndexView):
    """Start page: the Handlungsfelder cockpit of the user's scope."""

    permission_resource = "dashboard"
    view_permissions = {"chart_data": READ}

    @expose("/")
    def index(self):
        """Render the start page."""
        counts = {}
        for label, model, resource in (
            ("Kommunen", Municipality, "municipality"),
            ("Räume", Room, "room"),
            ("Stellen", Post, "post"),
            ("Kooperationspartner", Partner, "partner"),
            ("Kennzahlwerte", MonitoringEntry, "monitoring_entry"),
        ):
            if can(current_user, resource, READ):
                # Counted up to the lists' cap: a million figures are "mehr als 10.000"
                # here as on their list, without a scan of the table on every visit.
                rows = apply_scope(
                    select(literal_column("1")).select_from(model), model, resource, current_user
                ).limit(SecureModelView.count_cap + 1)
                count = db.session.scalar(select(func.count()).select_from(rows.subquery()))
                if count > SecureModelView.count_cap:
                    count = CappedCount(count)
                counts[label] = (count, resource)
        period = dashboard.current_period()
        statuses = dashboard.submission_status(current_user, period)
        selected = _selected_towns()
        charts = _charts(selected)
        return self.render(
            "kim/home.html",
            counts=counts,
            period=period,
            role=role_label(current_user.role),
            statuses=statuses,
            shown_statuses=dashboard.needing_attention(statuses),
            open_count=sum(1 for s in statuses if s.open),
            overdue_count=sum(1 for s in statuses if s.overdue),
            fte=dashboard.fte_by_baustein(current_user),
            cases=caching.kreis_wide(
                "cases",
                current_user,
                lambda: dashboard.case_figures(current_user, dashboard.recent_periods(period, 3)),
                period.id if period else None,
            )[0],
            charts=charts,
            # The picker offers the user's towns when the charts cannot show them all.
            towns=dashboard.towns_of(current_user) if charts["mode"] != "all" else [],
            selected=set(selected),
            due=dashboard.due_from(current_user, period),
        )

    @expose("/dashboard.json")
    def chart_data(self):
        """The chart series of the start page, in the user's scope."""
        return jsonify(_charts(_selected_towns()))


def _charts(selected: list[int]) -> dict:
    """The chart series, shared among the users who see every municipality (see
    :mod:`kim_admin.caching`), with the time they were computed for those."""
    charts, computed = caching.kreis_wide(
        "charts",
        current_user,
        lambda: dashboard.chart_data(current_user, selected=selected),
        *selected,
    )
    shared = current_app.config.get("KIM_CACHE_SECONDS") and not is_scoped(
        current_user, "monitoring_entry"
    )
    return {**charts, "as_of": local_time(computed).strftime("%H:%M:%S") if shared else None}


def _selected_towns() -> list[int]:
    """Municipalities picked for the charts (``?kommune=3&kommune=7``), at most ten."""
    return request.args.getlist("kommune", type=int)[: dashboard.CHART_TOWNS]


class PasswordForm(FlaskForm):
    """Current password and the new one, twice."""

    current = PasswordField(
        "Aktuelles Passwort", validators=[DataRequired("Bitte das aktuelle Passwort angeben.")]
    )
    new = PasswordField(
        "Neues Passwort",
        validators=[
            DataRequired("Bitte ein neues Passwort angeben."),
            Length(
                min=PASSWORD_MIN_LENGTH,
                message=f"Das Passwort muss mindestens {PASSWORD_MIN_LENGTH} Zeichen lang sein.",
            ),
        ],
    )

    def validate_new(self, field):
        """The shared password rules (length, blocklist, strength estimate)."""
        try:
            check_password_rules(field.data or "", [current_user.email, current_user.name])
        except AccountError as exc:
            raise ValidationError(str(exc)) from exc

    confirm = PasswordField(
        "Neues Passwort wiederholen",
        validators=[EqualTo("new", message="Die beiden neuen Passwörter stimmen nicht überein.")],
    )
    submit = SubmitField("Passwort ändern")


class AccountView(SecureView):
    """Change one's own password; other sessions of the user end."""

    permission_resource = "account"
    # The POST of the form needs no more than access to one's own account.
    view_permissions = {"index": READ}

    def is_visible(self) -> bool:
        return False  # reached from the user menu in the navigation bar

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """Show and process the password form."""
        form = PasswordForm()
        if form.validate_on_submit():
            user = current_user._get_current_object()
            if not claim_password_check(user):
                form.current.errors.append(
                    "Zu viele falsche Eingaben. Bitte warten Sie einige Minuten."
                )
            elif not user.check_password(form.current.data):
                audit.record("password_change_failed", "user", user.id, user.municipality_id)
                db.session.commit()
                form.current.errors.append("Das aktuelle Passwort ist falsch.")
            else:
                give_back_password_check(user)
                old_token = user.login_token
                user.set_password(form.new.data)
                # Keep this session (as a new one); every other session has ended.
                sessions.end(old_token)
                sessions.start(user)
                login_user(user)
                audit.record("password_changed", "user", user.id, user.municipality_id)
                db.session.commit()
                flash("Ihr Passwort wurde geändert. Andere Sitzungen wurden beendet.", "success")
                return redirect(url_for(".index"))
        return self.render("kim/account.html", form=form)
