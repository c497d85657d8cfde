"""Unguessable, revocable links: `kind | id | HMAC(secret, kind | id | nonce)`.

The id says which row to load; the 128-bit MAC proves the link was made by this server for
this row, this kind and this nonce. The database holds ids and nonces but never the secret,
so a leaked database yields no working link; rotating a row's nonce revokes its links; the
kind is inside the MAC, so a candidate's link can never pass as an evaluator's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from enum import IntEnum

_VERSION = 1
_MAC_BYTES = 16  # 128 bits
_TOKEN_BYTES = 2 + 16 + _MAC_BYTES


class LinkKind(IntEnum):
    CANDIDATE = 1  # the candidate's personal booking page
    ROOM_CANDIDATE = 2  # the candidate's way into a booking's room
    ROOM_EVALUATOR = 3  # the evaluator's way into a booking's room
    CALENDAR_FEED = 4  # an evaluator's calendar subscription (scheduler.feeds)
    RESULTS = 5  # the candidate's published results and their PDFs (scheduler.results)


@dataclass(frozen=True)
class ParsedLink:
    kind: LinkKind
    ident: uuid.UUID
    mac: bytes


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


class LinkSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        # A subkey, so the same server secret can key other things without cross-use.
        self._key = hmac.new(secret, b"viva/links/v1", hashlib.sha256).digest()

    def _mac(self, kind: LinkKind, ident: uuid.UUID, nonce: str) -> bytes:
        msg = bytes((_VERSION, kind)) + ident.bytes + nonce.encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()[:_MAC_BYTES]

    def make(self, kind: LinkKind, ident: uuid.UUID, nonce: str) -> str:
        raw = bytes((_VERSION, kind)) + ident.bytes + self._mac(kind, ident, nonce)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def verify(self, link: ParsedLink, nonce: str) -> bool:
        return hmac.compare_digest(link.mac, self._mac(link.kind, link.ident, nonce))


def parse_link(token: str, kind: LinkKind) -> ParsedLink | None:
    """Decode a token of the expected kind, or None; says nothing about validity yet.

    Only the spelling `LinkSigner.make` writes is accepted: base64 decoders also take
    padding, stray bits in the last character and the standard alphabet's `+` and `/`,
    which would give one link several working spellings (each a separate secret to
    leak, log or throttle). Re-encoding and comparing leaves exactly one.
    """
    if not 40 <= len(token) <= 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _TOKEN_BYTES or raw[0] != _VERSION or raw[1] != kind:
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        return None
    return ParsedLink(kind, uuid.UUID(bytes=raw[2:18]), raw[18:])
