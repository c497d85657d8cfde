"""Short-lived TURN credentials: coturn's shared-secret mode (the "TURN REST API").

coturn started with `use-auth-secret` and `static-auth-secret=SECRET` accepts any user name
of the form `<expiry unix time>:<id>` whose password is `base64(HMAC-SHA1(SECRET, name))`,
until that expiry. Viva holds the same secret (`[rooms] turn_secret`) and hands each
participant credentials that die with their room's window: nothing long-lived ever reaches
a browser, and nothing needs to be stored or revoked (draft-uberti-behave-turn-rest-00).

Pure functions and data: no aiortc here (rooms.relay turns the result into its objects).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from rooms.settings import IceServer, RoomsSettings

__all__ = ["ice_servers_until", "turn_credential", "turn_username"]


def turn_username(expires_at: datetime, ident: str) -> str:
    """`<expiry>:<id>`; coturn reads the number before the first ':' as the expiry."""
    if ":" in ident:
        raise ValueError("the id of a TURN user name cannot hold ':'")
    return f"{int(expires_at.timestamp())}:{ident}"


def turn_credential(secret: str, username: str) -> str:
    """The password coturn expects for `username`: base64(HMAC-SHA1(secret, username))."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def ice_servers_until(settings: RoomsSettings, expires_at: datetime, ident: str) -> list[IceServer]:
    """The configured STUN/TURN servers, then the shared-secret TURN server (if any) with
    credentials for `ident` valid until `expires_at` only."""
    servers = list(settings.ice_servers)
    if settings.turn_urls and settings.turn_secret:
        username = turn_username(expires_at, ident)
        servers.append(
            IceServer(
                urls=list(settings.turn_urls),
                username=username,
                credential=turn_credential(settings.turn_secret, username),
            )
        )
    return servers
