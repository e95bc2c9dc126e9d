"""One notification as an e-mail, and the SMTP connection that sends it.

The message is the standard library's :class:`email.message.EmailMessage`
(German plain text with an HTML alternative, both from Jinja templates under
``templates/notifications/mail/``; the HTML one is autoescaped). The link points
to the data-entry page of the municipality and quarter, under ``KIM_BASE_URL``.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from kim_admin.formatting import de_date
from models import Notification

from . import events

#: Where links point when KIM_BASE_URL is not set (``flask run``; refused in production).
DEVELOPMENT_URL = "http://127.0.0.1:5000"


class MailConfigError(RuntimeError):
    """The SMTP settings are missing or contradict each other (German message)."""


class ServerUnavailable(Exception):
    """No usable connection: unreachable, TLS refused, login refused; not a mail's fault."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")


def link(row: Notification) -> str:
    """The page the mail points to: the entry form of the municipality and quarter."""
    base = urlsplit(current_app.config.get("KIM_BASE_URL") or DEVELOPMENT_URL)
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "https"
    )
    values: dict[str, Any] = {}
    if row.municipality_id is not None:
        values["municipality"] = row.municipality_id
    if row.period_id is not None:
        values["period"] = row.period_id
    return adapter.build("entry.index", values, force_external=True)


def context(row: Notification) -> dict[str, Any]:
    """What the templates of one mail see."""
    period = str(row.period) if row.period is not None else ""
    town = row.municipality.name if row.municipality is not None else ""
    deadline = row.period.deadline if row.period is not None else None
    due = de_date(row.due or deadline)
    return {
        "row": row,
        "user": row.user,
        "town": town,
        "period": period,
        "deadline": de_date(deadline),
        "due": due,
        "reason": row.reason or "",
        "link": link(row),
        "kind": events.kind(row.kind),
        "subject": events.kind(row.kind).subject.format(town=town, period=period, due=due),
    }


def build(row: Notification) -> EmailMessage:
    """The e-mail of ``row``: German text and HTML bodies, addressed to its user."""
    values = context(row)
    env = current_app.jinja_env
    # Rendered from the environment directly: no request, so no request-bound
    # context processors (the command line sends these).
    text = env.get_template(f"notifications/mail/{row.kind}.txt").render(**values)
    html = env.get_template(f"notifications/mail/{row.kind}.html").render(**values)
    sender = current_app.config["KIM_MAIL_FROM"]
    message = EmailMessage()
    message["Subject"] = values["subject"]
    message["From"] = sender
    message["To"] = row.user.email
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("kim", domain=sender.rpartition("@")[2] or None)
    # RFC 3834: out-of-office replies should not answer an automatic mail.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def check_settings() -> None:
    """Refuse to run without a server and a sender, or with both TLS modes."""
    config = current_app.config
    if not config.get("KIM_SMTP_HOST"):
        raise MailConfigError("KIM_SMTP_HOST ist nicht gesetzt: kein Mailserver für den Versand.")
    if not config.get("KIM_MAIL_FROM"):
        raise MailConfigError("KIM_MAIL_FROM ist nicht gesetzt: keine Absenderadresse.")
    if not config.get("KIM_BASE_URL") and config["KIM_ENV"] == "production":
        raise MailConfigError(
            "KIM_BASE_URL ist nicht gesetzt: die Links in den E-Mails brauchen die Adresse, "
            "unter der KIM-Admin erreichbar ist (z. B. https://kim.hochsauerlandkreis.de)."
        )
    if config["KIM_SMTP_SSL"] and config["KIM_SMTP_STARTTLS"]:
        raise MailConfigError(
            "KIM_SMTP_SSL und KIM_SMTP_STARTTLS schließen sich aus: bitte nur eines setzen "
            "(SSL für Port 465, STARTTLS für Port 587)."
        )


def connect() -> smtplib.SMTP:
    """An SMTP connection as configured (TLS verified), logged in; or ServerUnavailable."""
    try:
        return _connect()
    except (OSError, smtplib.SMTPException) as exc:
        raise ServerUnavailable(exc) from exc


def _connect() -> smtplib.SMTP:
    config = current_app.config
    host, port = config["KIM_SMTP_HOST"], int(config["KIM_SMTP_PORT"])
    timeout = float(config["KIM_SMTP_TIMEOUT"])
    context = ssl.create_default_context(cafile=config.get("KIM_SMTP_CA_FILE") or None)
    if config["KIM_SMTP_SSL"]:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    try:
        if config["KIM_SMTP_STARTTLS"]:
            smtp.starttls(context=context)
        if config.get("KIM_SMTP_USER"):
            smtp.login(config["KIM_SMTP_USER"], config.get("KIM_SMTP_PASSWORD") or "")
    except BaseException:
        smtp.close()
        raise
    return smtp
