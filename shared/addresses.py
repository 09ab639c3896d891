"""Which IP addresses outbound HTTP may reach: the public internet, and networks the directory allows."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_allowed(ip: IPAddress, allowed: Sequence[Network]) -> bool:
    """Public, or inside an allowed network, judged by every address a connection to it leads to. Loopback,
    private, link-local (cloud metadata), shared (CGNAT) and unspecified (0.0.0.0, which reaches this host)
    addresses are not public."""
    return all(
        destination.is_global or any(destination in network for network in allowed) for destination in _destinations(ip)
    )


def _destinations(ip: IPAddress) -> list[IPAddress]:
    """An IPv4-mapped IPv6 address leads to its IPv4 one; a 6to4 or NAT64 address is both itself and the IPv4
    address it carries (a translator on the way hands it on)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    found: list[IPAddress] = [ip]
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found
