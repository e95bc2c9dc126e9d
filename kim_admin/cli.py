"""Command-line interface, one group per noun: ``flask users …``, ``flask demo …``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import accounts, backup, demo, jobs, oidc, retention
from .extensions import db
from .notifications.cli import notify_cli
from .permissions import ROLES
from .reference import load_reference_data

users_cli = AppGroup("users", help="Benutzer verwalten.")
reference_cli = AppGroup("reference", help="Referenzdaten des HSK.")
demo_cli = AppGroup("demo", help="Demo-Daten.")
backup_cli = AppGroup("backup", help="Datensicherung der ganzen Datenbank.")
audit_cli = AppGroup("audit", help="Protokoll (Audit-Trail).")
figures_cli = AppGroup("figures", help="Kennzahlwerte.")


def _read_password() -> str:
    """The first line of standard input, without its line break."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException("Kein Passwort auf der Standardeingabe erhalten.")
    return password


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice([code for code, _ in ROLES]))
@click.option("--municipality", "ags", help="Gemeindeschlüssel (AGS), für die Rolle Kommune.")
@click.option("--name", default="", help="Anzeigename.")
@click.option("--password-stdin", is_flag=True, required=True, help="Passwort von stdin lesen.")
def create_user(email: str, role: str, ags: str | None, name: str, password_stdin: bool) -> None:
    """Create a user; the password is read from standard input."""
    try:
        user = accounts.create_user(email, role, _read_password(), ags, name)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Benutzer {user.email} angelegt ({dict(ROLES)[user.role]}).")


@users_cli.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Passwort von stdin lesen.")
def set_password(email: str, password_stdin: bool) -> None:
    """Set a user's password (read from standard input); ends their sessions."""
    try:
        user = accounts.set_password(email, _read_password())
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Passwort für {user.email} geändert.")


@users_cli.command("deactivate")
@click.argument("email")
def deactivate(email: str) -> None:
    """Deactivate a user; they are logged out at their next request."""
    try:
        user = accounts.deactivate(email)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Benutzer {user.email} deaktiviert.")


@reference_cli.command("load")
def load() -> None:
    """Load the 12 HSK municipalities, target groups and indicators (idempotent)."""
    created = load_reference_data()
    click.echo(
        "Referenzdaten geladen: {municipalities} Kommunen, {target_groups} Zielgruppen, "
        "{indicators} Kennzahlen, {rules} Prüfregeln neu angelegt.".format(**created)
    )


@demo_cli.command("seed")
@click.option(
    "--force", is_flag=True, help="Vorhandene Benutzer und Daten löschen und neu anlegen."
)
@click.option(
    "--if-empty", is_flag=True, help="Nur laden, wenn die Datenbank leer ist; sonst nichts tun."
)
def seed(force: bool, if_empty: bool) -> None:
    """Load demo users, rooms, posts, partners and two years of figures (not in production)."""
    if current_app.config.get("KIM_ENV") == "production":
        raise click.ClickException(
            "Demo-Daten sind in der Produktion (KIM_ENV=production) nicht erlaubt."
        )
    if if_empty and not demo.is_empty():
        click.echo("Die Datenbank enthält bereits Daten; keine Demo-Daten geladen.")
    else:
        try:
            counts = demo.seed(force=force)
        except demo.DatabaseNotEmpty as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            "Demo-Daten geladen: {users} Benutzer, {partners} Partner, {rooms} Räume, "
            "{posts} Stellen, {periods} Quartale, {entries} Kennzahlwerte, "
            "{needs} Bedarfsschätzungen.".format(**counts)
        )
    logins = demo.demo_logins()
    if logins:
        click.echo(f"\nDemo-Zugänge (Passwort für alle: {demo.DEMO_PASSWORD}):")
        for email, role, town in logins:
            click.echo(f"  {email:<34} {dict(ROLES)[role]:<18} {town}")


@backup_cli.command("create")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_create(path: Path) -> None:
    """Write a backup of the database to PATH (pg_dump custom format, or a SQLite file)."""
    try:
        backup.create(path)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Sicherung geschrieben: {path} ({path.stat().st_size:,} Bytes).".replace(",", "."))


@backup_cli.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_restore(path: Path) -> None:
    """Restore the backup at PATH into the configured database, which must be empty."""
    try:
        backup.restore(path)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Sicherung {path} zurückgespielt.")


@audit_cli.command("purge")
def audit_purge() -> None:
    """Delete login events older than KIM_AUDIT_LOGIN_DAYS and other events older than
    KIM_AUDIT_CHANGE_YEARS; the purge itself is recorded."""
    try:
        counts = retention.purge()
    except retention.RetentionError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        "Protokoll bereinigt: {login_events} Anmeldeereignisse und {changes} ältere "
        "Einträge gelöscht.".format(**counts)
    )


@figures_cli.command("rebuild-totals")
def figures_rebuild_totals() -> None:
    """Compute the running totals of the start page afresh from the figures (after
    figures were written around the application, e.g. by hand in SQL)."""
    from .monitoring import totals

    cells = totals.rebuild()
    db.session.commit()
    click.echo(f"Summen neu berechnet: {cells} Zellen (Kommune × Quartal × Kennzahl).")


@figures_cli.command("check-totals")
def figures_check_totals() -> None:
    """Whether the running totals agree with the figures (exit code 1 if not)."""
    from .monitoring import totals

    wrong = totals.differences()
    if wrong:
        raise click.ClickException(
            f"{len(wrong)} Summen weichen von den Kennzahlwerten ab: "
            "flask figures rebuild-totals berechnet sie neu."
        )
    click.echo("Alle Summen stimmen mit den Kennzahlwerten überein.")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(users_cli)
    app.cli.add_command(reference_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(backup_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(figures_cli)
    app.cli.add_command(jobs.jobs_cli)
    app.cli.add_command(oidc.sso_cli)
    app.cli.add_command(notify_cli)
