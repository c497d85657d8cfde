"""Which network addresses Viva may connect to on an organisation's behalf: public ones only.

Webhook targets (scheduler.webhooks.targets) and evaluators' calendars (scheduler.busy_fetch)
are URLs an organisation types in; connecting to what they name must not reach the
machine's own network (a cloud's metadata service, an internal admin page). One rule for
both, so they cannot disagree: an address must be global (IANA's special-purpose
registries, as Python's `ipaddress` knows them: private, shared carrier-grade NAT
100.64.0.0/10, loopback, link-local, documentation ranges... are not) and not multicast;
an IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4, the NAT64 prefix) is judged
by the IPv4 address it reaches.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_public"]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IETF protocol assignments: not globally reachable, though not every Python knows it.
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")


def is_public(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` (a literal; an IPv6 zone is ignored) may be connected to."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or ip.sixtofour
        if carried is None and ip in _NAT64:
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if carried is not None:
            return is_public(carried)
    return ip.is_global and not ip.is_multicast and ip not in _PROTOCOL_ASSIGNMENTS
