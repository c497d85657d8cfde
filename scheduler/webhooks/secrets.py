"""Webhook signing secrets: made, kept encrypted, and used to sign (Standard Webhooks).

A secret is `whsec_` + base64 of 32 random bytes, the format every Standard Webhooks
library reads. It is shown once, when made; the database keeps it encrypted with Fernet
under a key derived (HKDF-SHA256) from `[server] secret_key`, which lives outside the
database: a leaked database alone yields no secret, so nobody can sign in Viva's name.
Changing `[server] secret_key` makes the stored secrets unreadable; rotate every webhook's
secret afterwards. Secrets never reach a log: only this module decrypts them, to sign.
"""

from __future__ import annotations

import base64
import secrets as random
from collections.abc import Iterable
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from standardwebhooks.webhooks import Webhook

__all__ = ["PREFIX", "SecretBox", "new_secret", "signature_header"]

PREFIX = "whsec_"
_INFO = b"viva webhook signing secrets v1"


def new_secret() -> str:
    return PREFIX + base64.b64encode(random.token_bytes(32)).decode()


class SecretBox:
    """Encrypts secrets for the database and decrypts them to sign."""

    def __init__(self, server_secret: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            server_secret
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a webhook secret cannot be decrypted: was [server] secret_key changed? "
                "rotate the webhook's secret"
            ) from exc


def signature_header(
    secrets: Iterable[str], message_id: str, timestamp: datetime, body: str
) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated (the spec's way
    of carrying the old and the new secret's signatures during a rotation)."""
    return " ".join(Webhook(s).sign(message_id, timestamp, body) for s in secrets)
