"""External calendars' passwords, encrypted at rest with a key the database never holds.

The key is derived from `[server] secret_key` (HKDF-SHA256 with its own label, so it is
independent of the links' HMAC key derived from the same secret) and used with Fernet
(AES-128-CBC + HMAC-SHA256): a database leak alone yields no password, and a tampered
ciphertext is refused rather than decrypted into garbage.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CredentialBox", "InvalidToken"]

_INFO = b"viva/external-calendars/v1"


class CredentialBox:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the secret must be at least 16 bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, password: str) -> str:
        return self._fernet.encrypt(password.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        """The password; InvalidToken if it was sealed under another secret or altered."""
        return self._fernet.decrypt(sealed.encode("ascii")).decode()
