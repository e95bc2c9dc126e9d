"""Text the database keeps encrypted: a copy of the database alone does not reveal it."""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

#: Marks a sealed value, so that a value written before sealing is told apart.
PREFIX = "fernet:"


@functools.lru_cache(maxsize=4)
def _fernet(secret: str) -> Fernet:
    """Fernet (AES-128-CBC with HMAC-SHA256) keyed from the app's SECRET_KEY by HKDF."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"kim-admin sealed text"
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _current() -> Fernet:
    return _fernet(str(current_app.config["SECRET_KEY"]))


class SealedText(TypeDecorator):
    """A text column stored encrypted with a key derived from ``SECRET_KEY``.

    Read back, a value that cannot be opened (written under another SECRET_KEY, or
    before the column was sealed) is ``None``: what it was for (a single sign-on
    session's refresh token) then ends as if it had none.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return PREFIX + _current().encrypt(str(value).encode()).decode()

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None or not value.startswith(PREFIX):
            return None
        try:
            return _current().decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            return None
