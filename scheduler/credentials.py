"""External calendars' passwords and the outbox's stored e-mails, encrypted at rest with keys
the database never holds.

Each key is derived from `[server] secret_key` (HKDF-SHA256 with its own label, so each is
independent of the links' HMAC key derived from the same secret) and used with Fernet
(AES-128-CBC + HMAC-SHA256): a database leak alone yields no password and none of the links
the e-mails carry, and a tampered ciphertext is refused rather than decrypted into garbage.
"""

from __future__ import annotations

import base64
import logging

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CredentialBox", "InvalidToken", "MessageBox"]

_INFO = b"viva/external-calendars/v1"
_MESSAGES = b"viva/outbox-bodies/v1"
# Every Fernet token starts with its version byte, 0x80: "gAAAAA" once base64-encoded. An
# RFC 5322 message starts with a header name, never with that.
_TOKEN = b"gAAAAA"

log = logging.getLogger("viva.credentials")


def _fernet(secret: bytes, info: bytes) -> Fernet:
    if len(secret) < 16:
        raise ValueError("the secret must be at least 16 bytes")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


class CredentialBox:
    def __init__(self, secret: bytes) -> None:
        self._fernet = _fernet(secret, _INFO)

    def seal(self, password: str) -> str:
        return self._fernet.encrypt(password.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The password; InvalidToken if it was sealed under another secret or altered."""
        return self._fernet.decrypt(sealed.encode("ascii")).decode()


class MessageBox:
    """The outbox's stored e-mails, sealed the same way with a key of their own
    (mailer.models.seal_messages): the links they carry are no use to whoever copies the
    database without the secret."""

    def __init__(self, secret: bytes) -> None:
        self._fernet = _fernet(secret, _MESSAGES)

    def seal(self, raw: bytes) -> bytes:
        return self._fernet.encrypt(raw)

    def open(self, stored: bytes) -> bytes:
        """The message; one stored before bodies were sealed as it is; an empty body (and
        an error in the log) for one sealed under another secret, which cannot be read."""
        if not stored.startswith(_TOKEN):
            return stored
        try:
            return self._fernet.decrypt(stored)
        except InvalidToken:
            log.error("an outbox message sealed under another secret key cannot be read")
            return b""
