"""Where a webhook may go: an address on the public internet, unless the directory allows private ones."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from services.notifier.channels import PermanentChannelError, TransientChannelError


async def refuse_private_target(url: str) -> None:
    """A webhook URL is directory data, but one resolving to loopback, a private range or a link-local address
    (cloud metadata) would let a directory edit reach inside the network Rujukan runs in."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise PermanentChannelError("webhook address has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientChannelError(f"webhook host does not resolve: {exc.strerror}") from exc
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if not all(candidate.is_global for candidate in _with_embedded_ipv4(ip)):
            raise PermanentChannelError(f"webhook host resolves to a non-public address ({ip}); not allowed")


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _with_embedded_ipv4(ip: IPAddress) -> list[IPAddress]:
    """The address, and any IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is where it leads."""
    found: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found
