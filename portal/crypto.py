"""Secrets at rest: a text field stored Fernet-encrypted with FIELD_ENCRYPTION_KEY."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models


@cache
def _fernet():
    return Fernet(settings.FIELD_ENCRYPTION_KEY.encode())


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str, ttl: int | None = None) -> str:
    """``ttl``: refuse a token older than this many seconds (Fernet tokens carry their time)."""
    try:
        return _fernet().decrypt(token.encode(), ttl=ttl).decode()
    except InvalidToken as exc:
        if ttl is not None:
            raise ValueError("the secret has expired, or FIELD_ENCRYPTION_KEY changed since it was saved") from exc
        raise ValueError(
            "cannot decrypt a secret: FIELD_ENCRYPTION_KEY differs from the one it was saved with"
        ) from exc


class EncryptedTextField(models.TextField):
    """Holds plain text in Python, ciphertext in the database. Never shown in the audit log."""

    secret = True

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
