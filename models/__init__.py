"""The data model, one module per aggregate; everything is re-exported here."""

from .audit import AuditEvent
from .funding import (
    AMOUNT_MAX,
    FUNDED_BAUSTEINE,
    FUNDING_YEAR_MAX,
    FUNDING_YEAR_MIN,
    FundingForward,
    PostFunding,
    PostVacancy,
)
from .indicator import FIELDS_OF_ACTION, INDICATOR_KINDS, Indicator
from .job import JOB_KINDS, JOB_STATUSES, Job
from .login_session import LoginSession
from .municipality import Municipality
from .needs import PRIORITIES, NeedsAssessment
from .notification import Notification, NotificationPreference
from .partner import PARTNER_KINDS, Partner, partner_municipality, partner_target_group
from .post import (
    BAUSTEINE,
    EMPLOYER_TYPES,
    FTE_MAX,
    FTE_MIN,
    POST_FUNCTIONS,
    POST_STATUSES,
    Post,
    post_target_group,
)
from .publication import PublishedYear
from .reporting import (
    SUBMISSION_STATUSES,
    VALUE_MAX,
    FigureTotal,
    MonitoringEntry,
    ReportingPeriod,
    Submission,
)
from .room import ROOM_KINDS, Room
from .steering import (
    MEASURE_STATUSES,
    OPEN_MEASURE_STATUSES,
    PROBLEM_CATEGORIES,
    PROBLEM_FREQUENCIES,
    REPORT_SECTIONS,
    SECTION_MAX,
    Decision,
    Measure,
    Meeting,
    ReportDocument,
    ReportText,
    StructuralProblem,
)
from .target_group import LEGAL_AREAS, TargetGroup
from .user import User
from .validation_rule import RULE_OPERATORS, RULE_SEVERITIES, ValidationRule

__all__ = [
    "AMOUNT_MAX",
    "BAUSTEINE",
    "EMPLOYER_TYPES",
    "FIELDS_OF_ACTION",
    "FTE_MAX",
    "FUNDED_BAUSTEINE",
    "FUNDING_YEAR_MAX",
    "FUNDING_YEAR_MIN",
    "FTE_MIN",
    "INDICATOR_KINDS",
    "JOB_KINDS",
    "JOB_STATUSES",
    "LEGAL_AREAS",
    "MEASURE_STATUSES",
    "OPEN_MEASURE_STATUSES",
    "PARTNER_KINDS",
    "POST_FUNCTIONS",
    "POST_STATUSES",
    "PRIORITIES",
    "PROBLEM_CATEGORIES",
    "PROBLEM_FREQUENCIES",
    "REPORT_SECTIONS",
    "ROOM_KINDS",
    "RULE_OPERATORS",
    "RULE_SEVERITIES",
    "SECTION_MAX",
    "SUBMISSION_STATUSES",
    "VALUE_MAX",
    "AuditEvent",
    "FundingForward",
    "Decision",
    "Indicator",
    "Job",
    "LoginSession",
    "Measure",
    "Meeting",
    "FigureTotal",
    "MonitoringEntry",
    "Municipality",
    "NeedsAssessment",
    "Notification",
    "NotificationPreference",
    "Partner",
    "Post",
    "PostFunding",
    "PostVacancy",
    "PublishedYear",
    "ReportDocument",
    "ReportText",
    "ReportingPeriod",
    "Room",
    "StructuralProblem",
    "Submission",
    "TargetGroup",
    "User",
    "ValidationRule",
    "partner_municipality",
    "partner_target_group",
    "post_target_group",
]
