"""User accounts: creation and password rules, shared by CLI and views."""

from __future__ import annotations

from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from zxcvbn import zxcvbn

from models import Municipality, User

from .extensions import db
from .permissions import MUNICIPAL_STAFF, ROLES

PASSWORD_MIN_LENGTH = 10
#: Longest password accepted (hashing and the strength estimate stay cheap).
PASSWORD_MAX_LENGTH = 128
#: zxcvbn's score (0–4) a password needs: 3 is "safely unguessable" for an online attack.
PASSWORD_MIN_SCORE = 3
#: Words of this workplace that attackers try first, besides zxcvbn's own lists.
CONTEXT_WORDS = [
    "kim",
    "kim-admin",
    "hsk",
    "hochsauerland",
    "hochsauerlandkreis",
    "kreis",
    "meschede",
    "arnsberg",
    "sauerland",
    "integration",
    "passwort",
    "kennwort",
]
#: Words that common German passwords are made of; a password that is one of them
#: plus digits and symbols ("Sommer2026!", "Passwort123") is refused.
COMMON_WORDS = frozenset(
    {
        "passwort",
        "kennwort",
        "hallo",
        "sommer",
        "winter",
        "fruehling",
        "frühling",
        "herbst",
        "willkommen",
        "geheim",
        "qwertz",
        "qwertzuiop",
        "fussball",
        "fußball",
        "schalke",
        "dortmund",
        "sauerland",
        "hochsauerland",
        "hochsauerlandkreis",
        "arnsberg",
        "meschede",
        "brilon",
        "kreis",
        "rathaus",
        "verwaltung",
        "integration",
        "kim",
        "admin",
        "benutzer",
        "start",
        "login",
        "anmelden",
        "schatz",
        "liebe",
        "deutschland",
    }
)


class AccountError(ValueError):
    """A German message explaining why an account change was refused."""


def normalize_email(email: str) -> str:
    """Validate an e-mail address and return it lower-cased."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AccountError(f"Ungültige E-Mail-Adresse: {email}") from exc


def check_password_rules(password: str, user_inputs: Iterable[str] = ()) -> None:
    """Refuse passwords that are short, common or easy to guess (BSI, NIST SP 800-63B).

    ``user_inputs`` are words of the person (e-mail, name) that must not carry
    the password. Length, a blocklist of common German passwords and zxcvbn's
    strength estimate decide; no composition rules.
    """
    if len(password) < PASSWORD_MIN_LENGTH:
        raise AccountError(f"Das Passwort muss mindestens {PASSWORD_MIN_LENGTH} Zeichen lang sein.")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise AccountError(f"Das Passwort darf höchstens {PASSWORD_MAX_LENGTH} Zeichen lang sein.")
    core = password.lower().strip("!?.,;:#*+-_=/ 0123456789")
    if core in COMMON_WORDS or not core:
        raise AccountError("Dieses Passwort ist weit verbreitet. Bitte ein anderes wählen.")
    words = [w for text in user_inputs if text for w in text.lower().replace("@", " ").split()]
    result = zxcvbn(password, user_inputs=[*CONTEXT_WORDS, *words])
    if result["score"] < PASSWORD_MIN_SCORE:
        raise AccountError(
            "Das Passwort ist zu leicht zu erraten. Besser: mehrere zufällige Wörter, z. B. "
            "„Tasse-Wolke-Fahrrad-42“."
        )


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
    check_password_rules(password, [email, name])
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
    check_password_rules(password, [user.email, user.name])
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
