"""``flask notify …``: queue what the calendar asks for and send the outbox."""

from __future__ import annotations

from datetime import date

import click
from flask.cli import AppGroup

from . import mail, outbox, sender

notify_cli = AppGroup("notify", help="E-Mail-Benachrichtigungen.")


@notify_cli.command("run")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Stichtag für Erinnerungen (JJJJ-MM-TT); ohne Angabe heute.",
)
def run(today) -> None:
    """Queue reminders due today, then send every due mail once (run it from a timer)."""
    try:
        mail.check_settings()
    except mail.MailConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    day: date = today.date() if today else date.today()
    queued = outbox.schedule(day)
    result = sender.deliver()
    click.echo(
        f"Benachrichtigungen: {queued} neu vorgemerkt, {result.sent} gesendet, "
        f"{result.skipped} entfallen, {result.retry} später erneut, "
        f"{result.failed} endgültig fehlgeschlagen."
    )
    if result.released:
        click.echo(f"{result.released} nach einem Abbruch erneut eingereiht.")
    for error in result.errors:
        click.echo(f"Fehler: {error}", err=True)
    if result.retry or result.failed:
        # A non-zero exit marks the systemd unit failed, so monitoring sees an outage.
        raise SystemExit(1)
