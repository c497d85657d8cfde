"""Certificate verification codes: 80 bits, typed by hand, printed again identically.

A code is `HMAC(secret, "viva/results/code" | result id)` cut to 80 bits and written in
Crockford's base32 (no I, L, O or U, so nothing reads as another character), in four
groups of four: `7KQ3-M9XD-2FHA-WT6C`. Deriving it from the server secret and the result's
id, rather than drawing it at random, lets every PDF print the same code without storing
it; the database keeps only its SHA-256, which finds the row from a typed code and yields
no code if it leaks (80 bits of MAC cannot be searched from a hash). Pure: no database.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_BITS = 80
_CHARS = CODE_BITS // 5  # 16
_GROUP = 4
# What people type for what they see: Crockford's own reading of the ambiguous letters.
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", "- _.\t")


class CodeMaker:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the secret must be at least 16 bytes")
        # A subkey of its own: the link MACs (rooms.tokens) never meet these.
        self._key = hmac.new(secret, b"viva/results/code/v1", hashlib.sha256).digest()

    def code(self, result_id: uuid.UUID) -> str:
        """The result's code, grouped for reading."""
        mac = hmac.new(self._key, result_id.bytes, hashlib.sha256).digest()
        number = int.from_bytes(mac[: CODE_BITS // 8], "big")
        chars = "".join(ALPHABET[(number >> (5 * (_CHARS - 1 - i))) & 31] for i in range(_CHARS))
        return "-".join(chars[i : i + _GROUP] for i in range(0, _CHARS, _GROUP))


def normalise(typed: str) -> str | None:
    """A typed code in its canonical 16 characters, or None when it cannot be one.

    Case, dashes, spaces and the look-alikes O/I/L are forgiven; anything else is refused
    before any look-up is spent on it.
    """
    if len(typed) > 64:
        return None
    text = typed.upper().translate(_SEPARATORS).translate(_READ_AS)
    if len(text) != _CHARS or any(c not in ALPHABET for c in text):
        return None
    return text


def code_hash(code: str) -> str:
    """What the database keeps of a code: the SHA-256 of its canonical form."""
    canonical = normalise(code)
    if canonical is None:
        raise ValueError("not a verification code")
    return hashlib.sha256(canonical.encode()).hexdigest()


def lookup_hash(typed: str) -> str:
    """The hash to look up for anything typed: a malformed code gets the hash of a value no
    code has, so a look-up is always done and every answer takes the same work."""
    canonical = normalise(typed)
    return hashlib.sha256((canonical or "not-a-code").encode()).hexdigest()
