"""Test access to the real RabbitMQ: a fresh vhost per test, and a plain aio-pika client to poke at it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import aio_pika
import aiohttp

AMQP_BASE = os.environ.get("RUJUKAN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("RUJUKAN_TEST_MANAGEMENT_URL", "http://127.0.0.1:15672")
_AUTH = {"Authorization": aiohttp.encode_basic_auth("guest", "guest")}


async def _management(method: str, path: str, body: Any = None) -> bool:
    try:
        async with (
            aiohttp.ClientSession(headers=_AUTH, timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.request(method, f"{MANAGEMENT_URL}/api{path}", json=body) as response,
        ):
            return response.status < 300
    except aiohttp.ClientConnectionError:
        return False


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)  # noqa: S603, S607


@asynccontextmanager
async def fresh_vhost() -> AsyncIterator[str]:
    """A vhost of its own for one test (management API when enabled, else rabbitmqctl); deleted after."""
    name = f"rujukan-test-{uuid.uuid4().hex[:10]}"
    quoted = quote(name, safe="")
    if await _management("PUT", f"/vhosts/{quoted}"):
        await _management("PUT", f"/permissions/{quoted}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        via_api = True
    else:
        await asyncio.to_thread(_rabbitmqctl, "add_vhost", name)
        await asyncio.to_thread(_rabbitmqctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        via_api = False
    try:
        yield AMQP_BASE.rstrip("/") + "/" + quoted
    finally:
        if via_api:
            await _management("DELETE", f"/vhosts/{quoted}")
        else:
            await asyncio.to_thread(_rabbitmqctl, "delete_vhost", name)


async def delete_vhost_of(amqp_url: str) -> None:
    """Pulls the broker out from under running services (the vhost's connections are closed)."""
    quoted = amqp_url.rsplit("/", 1)[1]
    if not await _management("DELETE", f"/vhosts/{quoted}"):
        from urllib.parse import unquote

        await asyncio.to_thread(_rabbitmqctl, "delete_vhost", unquote(quoted))


async def limit_queue(amqp_url: str, queue: str, max_length: int) -> None:
    """An operator's policy on the test's vhost: ``queue`` holds at most ``max_length`` messages and refuses
    (nacks) publishes beyond."""
    quoted = amqp_url.rsplit("/", 1)[1]
    definition = {"max-length": max_length, "overflow": "reject-publish"}
    pattern = f"^{re.escape(queue)}$"
    body = {"pattern": pattern, "apply-to": "queues", "definition": definition}
    if not await _management("PUT", f"/policies/{quoted}/limit-{queue}", body):
        await asyncio.to_thread(
            _rabbitmqctl,
            "set_policy",
            "-p",
            unquote(quoted),
            "--apply-to",
            "queues",
            f"limit-{queue}",
            pattern,
            json.dumps(definition),
        )


@dataclass(frozen=True)
class Consumer:
    queue: str
    channel: str
    prefetch: int


async def consumers_of(amqp_url: str) -> list[Consumer]:
    """The consumers on the test's vhost as the broker sees them (management API, else rabbitmqctl)."""
    quoted = amqp_url.rsplit("/", 1)[1]
    try:
        async with (
            aiohttp.ClientSession(headers=_AUTH, timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{MANAGEMENT_URL}/api/consumers/{quoted}") as response,
        ):
            if response.status == 200:
                # A consumer whose queue or channel the statistics have not caught up with yet has them as [].
                return [
                    Consumer(item["queue"]["name"], item["channel_details"]["name"], int(item["prefetch_count"]))
                    for item in await response.json()
                    if isinstance(item["queue"], dict) and isinstance(item["channel_details"], dict)
                ]
    except aiohttp.ClientConnectionError:
        pass
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "list_consumers", "-p", unquote(quoted), "queue_name", "channel_pid", "prefetch_count"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = [line.split("\t") for line in listed.stdout.splitlines()[1:] if line.strip()]
    return [Consumer(queue, channel, int(prefetch)) for queue, channel, prefetch in rows]


class BrokerClient:
    """What an agency system (or an operator) does with plain aio-pika."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        self.connection = connection
        self._channel: aio_pika.abc.AbstractChannel | None = None

    @classmethod
    async def connect(cls, url: str) -> BrokerClient:
        return cls(await aio_pika.connect_robust(url))

    async def channel(self) -> aio_pika.abc.AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        return self._channel

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | dict[str, Any],
        *,
        message_type: str | None,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> str:
        message_id = message_id or str(uuid.uuid4())
        channel = await self.channel()
        target = await channel.get_exchange(exchange, ensure=False) if exchange else channel.default_exchange
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        await target.publish(
            aio_pika.Message(
                payload,
                message_id=message_id,
                type=message_type,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=headers or {},
                correlation_id=correlation_id,
            ),
            routing_key=routing_key,
            mandatory=True,
        )
        return message_id

    async def take(
        self, queue: str, count: int = 1, *, timeout: float = 10
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Exactly ``count`` messages from ``queue`` (acked), waiting up to ``timeout`` seconds for them."""
        channel = await self.channel()
        declared = await channel.get_queue(queue, ensure=True)
        taken: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(taken) < count:
            message = await declared.get(no_ack=False, fail=False)
            if message is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{queue}: {len(taken)} of {count} messages after {timeout} s")
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            taken.append(message)
        return taken

    async def drain(
        self, queue: str, *, at_least: int, timeout: float = 30
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Every message in ``queue`` (acked): at least ``at_least``, then whatever else is there."""
        taken = await self.take(queue, at_least, timeout=timeout)
        declared = await (await self.channel()).get_queue(queue, ensure=True)
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            await message.ack()
            taken.append(message)
        return taken

    async def depth(self, queue: str) -> int:
        channel = await self.channel()
        # robust=False: a robust channel answers a repeated passive declare from its cache, with the first count.
        declared = await channel.declare_queue(queue, passive=True, robust=False)
        return declared.declaration_result.message_count or 0

    async def close(self) -> None:
        await self.connection.close()
