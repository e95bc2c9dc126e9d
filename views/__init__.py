"""Flask-Admin views, one module per area; ``init_admin`` registers them all."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from kim_admin.config import PROJECT_ROOT
from kim_admin.security import csp_nonce
from models import (
    AuditEvent,
    Decision,
    Indicator,
    Measure,
    Meeting,
    MonitoringEntry,
    Municipality,
    NeedsAssessment,
    Notification,
    Partner,
    Post,
    PostFunding,
    PostVacancy,
    ReportingPeriod,
    Room,
    StructuralProblem,
    Submission,
    TargetGroup,
    User,
    ValidationRule,
)

from .coverage import CoverageView, NeedsAssessmentView
from .entry import DataEntryView, MeldestandView
from .funding import FundingYearView, PostFundingView, PostVacancyView
from .home import AccountView, HomeView
from .masterdata import (
    IndicatorView,
    MunicipalityView,
    PartnerView,
    PostView,
    RoomView,
    TargetGroupView,
)
from .notifications import NotificationSettingsView, NotificationView
from .report import ReportView
from .reporting import (
    MonitoringEntryView,
    ReportingPeriodView,
    SubmissionView,
    ValidationRuleView,
)
from .steering import (
    DecisionView,
    MeasureView,
    MeetingView,
    ProblemOverviewView,
    ReportDocumentView,
    StructuralProblemView,
)
from .users import AuditEventView, UserView

MASTER_DATA = "Stammdaten"
MONITORING = "Monitoring"
FIELDS_OF_ACTION = "Handlungsfelder"
FUNDING = "Förderung"
STEERING = "Steuerungsgruppe"
ADMINISTRATION = "Verwaltung"


def init_admin(app: Flask) -> Admin:
    """Create the ``Admin`` for ``app`` and register every view (a new one per app)."""
    admin = Admin(
        app,
        name="KIM-Admin",
        url="/",
        index_view=HomeView(name="Start", url="/", endpoint="admin"),
        theme=Bootstrap4Theme(base_template="kim/base.html", fluid=True),
        csp_nonce_generator=csp_nonce,
        # German texts Flask-Admin's own catalogue lacks (kim_admin/translations).
        translations_path=str(PROJECT_ROOT / "kim_admin" / "translations"),
    )
    admin.add_views(
        MunicipalityView(Municipality, name="Kommunen", category=MASTER_DATA),
        TargetGroupView(TargetGroup, name="Zielgruppen", category=MASTER_DATA),
        RoomView(Room, name="Räume", category=MASTER_DATA),
        PostView(Post, name="Stellen", category=MASTER_DATA),
        PartnerView(Partner, name="Kooperationspartner", category=MASTER_DATA),
        IndicatorView(Indicator, name="Kennzahlen", category=MASTER_DATA),
        DataEntryView(name="Dateneingabe", endpoint="entry", url="/erfassung", category=MONITORING),
        MeldestandView(
            name="Meldestand", endpoint="meldestand", url="/meldestand", category=MONITORING
        ),
        ReportView(
            name="Evaluationsbericht", endpoint="report", url="/bericht", category=MONITORING
        ),
        ReportingPeriodView(ReportingPeriod, name="Meldezeiträume", category=MONITORING),
        MonitoringEntryView(MonitoringEntry, name="Kennzahlwerte", category=MONITORING),
        SubmissionView(Submission, name="Meldungen", category=MONITORING),
        ValidationRuleView(ValidationRule, name="Prüfregeln", category=MONITORING),
        NeedsAssessmentView(NeedsAssessment, name="Bedarfserhebung", category=FIELDS_OF_ACTION),
        CoverageView(
            name="Versorgungsmatrix",
            endpoint="coverage",
            url="/versorgung",
            category=FIELDS_OF_ACTION,
        ),
        FundingYearView(
            name="Förderjahr", endpoint="funding_year", url="/foerderung", category=FUNDING
        ),
        PostFundingView(PostFunding, name="Förderungen", category=FUNDING),
        PostVacancyView(PostVacancy, name="Vakanzzeiträume", category=FUNDING),
        MeetingView(Meeting, name="Sitzungen", category=STEERING),
        DecisionView(Decision, name="Beschlüsse", category=STEERING),
        MeasureView(Measure, name="Maßnahmen", category=STEERING),
        StructuralProblemView(StructuralProblem, name="Strukturelle Probleme", category=STEERING),
        ProblemOverviewView(
            name="Probleme im Überblick",
            endpoint="problem_overview",
            url="/probleme",
            category=STEERING,
        ),
        ReportDocumentView(
            name="Evaluationsbericht (PDF)",
            endpoint="report_pdf",
            url="/bericht-pdf",
            category=STEERING,
        ),
        UserView(User, name="Benutzer", category=ADMINISTRATION),
        AuditEventView(AuditEvent, name="Protokoll", category=ADMINISTRATION),
        NotificationView(Notification, name="Benachrichtigungen", category=ADMINISTRATION),
        AccountView(name="Passwort ändern", endpoint="account", url="/konto"),
        NotificationSettingsView(
            name="E-Mail-Benachrichtigungen",
            endpoint="notification_settings",
            url="/konto/benachrichtigungen",
        ),
    )
    return admin
