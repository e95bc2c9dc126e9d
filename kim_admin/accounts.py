"""User accounts: creation and password rules, shared by CLI and views."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from models import Municipality, User

from .extensions import db
from .permissions import MUNICIPAL_STAFF, ROLES

PASSWORD_MIN_LENGTH = 10


class AccountError(ValueError):
    """A German message explaining why an account change was refused."""


def normalize_email(email: str) -> str:
    """Validate an e-mail address and return it lower-cased."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AccountError(f"Ungültige E-Mail-Adresse: {email}") from exc


def check_password_rules(password: str) -> None:
    """Refuse passwords that are too short."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise AccountError(f"Das Passwort muss mindestens {PASSWORD_MIN_LENGTH} Zeichen lang sein.")


def find_user(email: str) -> User | None:
    """The user with this e-mail address (case-insensitive)."""
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def create_user(
    email: str,
    role: str,
    password: str,
    municipality_ags: str | None = None,
    name: str = "",
) -> User:
    """Create and commit a user; raises :class:`AccountError` on bad input."""
    email = normalize_email(email)
    if role not in dict(ROLES):
        raise AccountError(f"Unbekannte Rolle: {role} (erlaubt: {', '.join(dict(ROLES))})")
    if find_user(email) is not None:
        raise AccountError(f"Es gibt bereits einen Benutzer mit der E-Mail-Adresse {email}.")
    municipality = None
    if municipality_ags:
        municipality = db.session.scalar(
            select(Municipality).where(Municipality.ags == municipality_ags)
        )
        if municipality is None:
            raise AccountError(f"Keine Kommune mit dem Gemeindeschlüssel {municipality_ags}.")
    if role == MUNICIPAL_STAFF and municipality is None:
        raise AccountError("Ein Benutzer der Rolle Kommune braucht eine Kommune (--municipality).")
    check_password_rules(password)
    user = User(email=email, role=role, municipality=municipality, name=name)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def set_password(email: str, password: str) -> User:
    """Change a user's password; this ends the user's other sessions."""
    user = find_user(email)
    if user is None:
        raise AccountError(f"Kein Benutzer mit der E-Mail-Adresse {email}.")
    check_password_rules(password)
    user.set_password(password)
    db.session.commit()
    return user


def deactivate(email: str) -> User:
    """Deactivate a user; their sessions end with their next request."""
    user = find_user(email)
    if user is None:
        raise AccountError(f"Kein Benutzer mit der E-Mail-Adresse {email}.")
    user.active = False
    db.session.commit()
    return user
