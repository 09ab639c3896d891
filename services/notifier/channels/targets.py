"""Where the channels that POST may connect: an address on the public internet, or one inside a network the
directory allows (``private_webhook_networks``; the demo allows its own loopback endpoints; shared/addresses.py).

A webhook URL is directory data, but one reaching loopback, a private range or a link-local address (cloud
metadata) would let a directory edit reach inside the network Rujukan runs in. The check is on the address the
connection goes to, not on the name in the URL: a name that resolves to a public address when checked and to
127.0.0.1 when connected (DNS rebinding) must not get through, so the check sits in the connector's resolver."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.notifier.channels import PermanentChannelError
from shared.addresses import Network, address_allowed


class RefusedAddressError(PermanentChannelError):
    """The host is, or resolves to, an address outside the public internet and the allowed networks."""


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` (aiohttp's default resolver) and refuses the whole answer if any address in it
    is not allowed. The connector connects only to addresses its resolver returned, so the address checked is
    the address connected to. ``allowed`` is read on every lookup: a directory reload takes effect at once."""

    def __init__(
        self, allowed: Callable[[], Sequence[Network]], *, what: str, inner: AbstractResolver | None = None
    ) -> None:
        self._allowed = allowed
        self._what = what
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            # aiohttp's resolvers want the running loop, which a channel built before the service starts lacks.
            self._inner = DefaultResolver()
        found = await self._inner.resolve(host, port, family)
        allowed = self._allowed()
        for result in found:
            self._check(host, result["host"], allowed)
        return found

    def check_literal(self, host: str) -> None:
        """An IP address written in the URL: aiohttp connects to it without asking the resolver."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        self._check(host, host, self._allowed())

    def _check(self, host: str, address: str, allowed: Sequence[Network]) -> None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise RefusedAddressError(f"{self._what} host {host} resolves to an unreadable address") from None
        if not address_allowed(ip, allowed):
            where = "is a non-public address" if host == address else f"resolves to a non-public address ({ip})"
            raise RefusedAddressError(f"{self._what} host {host} {where} outside the allowed networks")

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
