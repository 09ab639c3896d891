"""Webhooks and the gateway connect only to public addresses or the directory's allowed networks, checked on the
address actually connected to: a name that resolves to a public address once and to loopback the next time
(DNS rebinding) is refused the second time."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from services.notifier.channels import CircuitBreakers, Outgoing, PermanentChannelError, QuickRetries
from services.notifier.channels.gateway import GatewayChannel
from services.notifier.channels.targets import GuardedResolver, RefusedAddressError
from services.notifier.channels.webhook import WebhookChannel
from shared.addresses import Network
from tests.system import free_port, serve_post

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)


class FakeDns(AbstractResolver):
    """Answers each name with the next of its answers, the last one from then on; counts the lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = answers
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        queue = self._answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def guarded(answers: dict[str, list[list[str]]], allowed: Sequence[Network] = ()) -> GuardedResolver:
    return GuardedResolver(lambda: allowed, what="webhook", inner=FakeDns(answers))


async def test_a_name_that_resolves_public_then_to_loopback_is_refused_when_it_turns() -> None:
    resolver = guarded({"hooks.agency.example": [["93.184.216.34"], ["127.0.0.1"]]})

    first = await resolver.resolve("hooks.agency.example", 443)
    with pytest.raises(RefusedAddressError) as refused:
        await resolver.resolve("hooks.agency.example", 443)

    assert [result["host"] for result in first] == ["93.184.216.34"]
    assert refused.value.reason == (
        "webhook host hooks.agency.example resolves to a non-public address (127.0.0.1) outside the allowed networks"
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 - connecting to it reaches this host
        "::1",
        "::",
        "fe80::1",
        "fc00::5",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
    ],
)
async def test_a_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    resolver = guarded({"hooks.agency.example": [[address]]})

    with pytest.raises(RefusedAddressError, match=r"^webhook host hooks\.agency\.example resolves to a non-public"):
        await resolver.resolve("hooks.agency.example", 443)


async def test_one_non_public_address_among_public_ones_refuses_the_whole_answer() -> None:
    resolver = guarded({"hooks.agency.example": [["93.184.216.34", "2606:2800:220:1::1", "10.0.0.7"]]})

    with pytest.raises(RefusedAddressError, match=r"\(10\.0\.0\.7\)"):
        await resolver.resolve("hooks.agency.example", 443)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "::ffff:93.184.216.34"])
async def test_a_name_resolving_to_public_addresses_passes_ipv4_ipv6_and_ipv4_mapped(address: str) -> None:
    resolver = guarded({"hooks.agency.example": [[address]]})

    assert [r["host"] for r in await resolver.resolve("hooks.agency.example", 443)] == [address]


@pytest.mark.parametrize("address", ["127.0.0.1", "::ffff:127.0.0.1"])
async def test_an_allowed_network_lets_its_addresses_through_in_either_notation(address: str) -> None:
    resolver = guarded({"desk.local": [[address]]}, LOOPBACK)

    assert [r["host"] for r in await resolver.resolve("desk.local", 80)] == [address]


@pytest.mark.parametrize("address", ["127.0.0.2", "::1", "10.0.0.1", "0.0.0.0"])  # noqa: S104
async def test_an_allowed_network_lets_nothing_else_through(address: str) -> None:
    resolver = guarded({"desk.local": [[address]]}, LOOPBACK)

    with pytest.raises(RefusedAddressError):
        await resolver.resolve("desk.local", 80)


@pytest.mark.parametrize(
    ("host", "refused"),
    [("127.0.0.1", False), ("127.0.0.2", True), ("169.254.169.254", True), ("::1", True), ("93.184.216.34", False)],
)
def test_an_ip_address_written_in_the_url_is_checked_without_a_lookup(host: str, refused: bool) -> None:
    dns = FakeDns({})
    resolver = GuardedResolver(lambda: LOOPBACK, what="webhook", inner=dns)

    if refused:
        with pytest.raises(RefusedAddressError, match=f"^webhook host {host} is a non-public address"):
            resolver.check_literal(host)
    else:
        resolver.check_literal(host)
    resolver.check_literal("hooks.agency.example")

    assert dns.lookups == 0


class Desk:
    """A local HTTP endpoint counting the POSTs that reach it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts = 0

    async def _receive(self, _: web.Request) -> web.Response:
        self.posts += 1
        return web.Response(status=204)


@pytest.fixture
async def desk() -> AsyncIterator[Desk]:
    desk = Desk()
    runner = await serve_post("/{path:.*}", desk._receive, desk.port)
    yield desk
    await runner.cleanup()


def retries() -> tuple[QuickRetries, CircuitBreakers]:
    breakers = CircuitBreakers(threshold=1, cool_down=30)
    return QuickRetries(attempts=3, breakers=breakers, max_wait_seconds=0), breakers


async def test_a_webhook_whose_name_resolves_to_loopback_is_refused_for_good_without_connecting(desk: Desk) -> None:
    quick, breakers = retries()
    url = f"http://hooks.agency.example:{desk.port}/hook"
    channel = WebhookChannel(
        timeout_seconds=2, retries=quick, resolver=guarded({"hooks.agency.example": [["127.0.0.1"]]})
    )
    await channel.start()
    try:
        with pytest.raises(PermanentChannelError) as refused:
            await channel.deliver(Outgoing("n-1", "webhook", url, text="t", payload={"a": 1}, secret=SECRET))
    finally:
        await channel.close()

    assert refused.value.reason.startswith("webhook host hooks.agency.example resolves to a non-public address")
    assert refused.value.attempts == 1
    assert desk.posts == 0
    assert breakers.allows(url), "a refused address is no failure of the endpoint"


async def test_the_same_webhook_goes_through_once_its_network_is_allowed(desk: Desk) -> None:
    quick, _ = retries()
    url = f"http://hooks.agency.example:{desk.port}/hook"
    channel = WebhookChannel(
        timeout_seconds=2, retries=quick, resolver=guarded({"hooks.agency.example": [["127.0.0.1"]]}, LOOPBACK)
    )
    await channel.start()
    try:
        attempts = await channel.deliver(Outgoing("n-1", "webhook", url, text="t", payload={"a": 1}, secret=SECRET))
    finally:
        await channel.close()

    assert (attempts, desk.posts) == (1, 1)


async def test_a_webhook_written_as_a_loopback_address_is_refused_without_connecting(desk: Desk) -> None:
    quick, _ = retries()
    channel = WebhookChannel(timeout_seconds=2, retries=quick, resolver=guarded({}))
    await channel.start()
    try:
        with pytest.raises(PermanentChannelError, match=r"^webhook host 127\.0\.0\.1 is a non-public address"):
            await channel.deliver(
                Outgoing("n-1", "webhook", f"http://127.0.0.1:{desk.port}/h", text="t", payload={}, secret=SECRET)
            )
    finally:
        await channel.close()

    assert desk.posts == 0


async def test_the_gateway_is_held_to_the_same_networks(desk: Desk) -> None:
    quick, _ = retries()
    resolver = GuardedResolver(lambda: (), what="gateway", inner=FakeDns({"sms.example": [["10.9.8.7"]]}))
    channel = GatewayChannel(
        url=f"http://sms.example:{desk.port}/messages", token=None, timeout_seconds=2, retries=quick, resolver=resolver
    )
    await channel.start()
    try:
        with pytest.raises(PermanentChannelError, match=r"^gateway host sms\.example resolves to a non-public"):
            await channel.deliver(Outgoing("n-1", "sms", "+628125502001", text="t"))
    finally:
        await channel.close()

    assert desk.posts == 0


async def test_a_redirect_is_still_refused_for_good() -> None:
    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data")

    port = free_port()
    runner = await serve_post("/hook", redirect, port)
    quick, _ = retries()
    channel = WebhookChannel(timeout_seconds=2, retries=quick, resolver=guarded({}, LOOPBACK))
    await channel.start()
    try:
        with pytest.raises(PermanentChannelError, match="answered HTTP 302") as refused:
            await channel.deliver(
                Outgoing("n-1", "webhook", f"http://127.0.0.1:{port}/hook", text="t", payload={}, secret=SECRET)
            )
    finally:
        await channel.close()
        await runner.cleanup()

    assert refused.value.attempts == 1
