"""Links: unguessable, bound to their kind, revocable, useless without the secret."""

from __future__ import annotations

import base64
import uuid

import pytest

from rooms.tokens import LinkKind, LinkSigner, new_nonce, parse_link

SECRET = b"0123456789abcdef0123456789abcdef"
GOLDEN = "AQMAAAAAAAAAAAAAAAAAAAABYzhIxic1Ch5onsEWPejo2A"


def test_round_trip_and_entropy() -> None:
    signer = LinkSigner(SECRET)
    ident, nonce = uuid.uuid4(), new_nonce()
    token = signer.make(LinkKind.CANDIDATE, ident, nonce)
    link = parse_link(token, LinkKind.CANDIDATE)
    assert link is not None and link.ident == ident
    assert signer.verify(link, nonce)
    assert len(link.mac) * 8 >= 128
    assert token.isascii() and "/" not in token and "=" not in token


def test_a_link_of_one_kind_never_passes_as_another() -> None:
    signer = LinkSigner(SECRET)
    ident, nonce = uuid.uuid4(), new_nonce()
    candidate_room = signer.make(LinkKind.ROOM_CANDIDATE, ident, nonce)
    assert parse_link(candidate_room, LinkKind.ROOM_EVALUATOR) is None
    # Even with the kind byte rewritten, the MAC (which covers the kind) fails.
    raw = bytearray(base64.urlsafe_b64decode(candidate_room + "=="))
    raw[1] = LinkKind.ROOM_EVALUATOR
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    link = parse_link(forged, LinkKind.ROOM_EVALUATOR)
    assert link is not None and not signer.verify(link, nonce)


def test_rotating_the_nonce_revokes() -> None:
    signer = LinkSigner(SECRET)
    ident, nonce = uuid.uuid4(), new_nonce()
    link = parse_link(signer.make(LinkKind.CANDIDATE, ident, nonce), LinkKind.CANDIDATE)
    assert link is not None
    assert not signer.verify(link, new_nonce())


def test_the_database_alone_does_not_yield_links() -> None:
    """Ids and nonces (what a leaked database holds) with another secret make no valid MAC."""
    ident, nonce = uuid.uuid4(), new_nonce()
    real = LinkSigner(SECRET)
    guess = LinkSigner(b"attacker-secret-attacker-secret!")
    forged = parse_link(guess.make(LinkKind.CANDIDATE, ident, nonce), LinkKind.CANDIDATE)
    assert forged is not None and not real.verify(forged, nonce)


def test_garbage_is_rejected_without_errors() -> None:
    for token in ["", "x", "A" * 46, "%%%%" * 12, "AQ" + "-" * 44, "é" * 46]:
        assert parse_link(token, LinkKind.CANDIDATE) is None


def test_a_short_secret_is_refused_and_sixteen_bytes_suffice() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LinkSigner(b"x" * 15)
    LinkSigner(b"x" * 16)


def test_links_mailed_by_one_release_stay_valid_in_the_next() -> None:
    """The MAC's inputs (subkey label, layout) are part of every link ever mailed: changing
    them silently revokes them all. This pins one token."""
    token = LinkSigner(SECRET).make(LinkKind.ROOM_EVALUATOR, uuid.UUID(int=1), "nonce")
    assert token == GOLDEN
