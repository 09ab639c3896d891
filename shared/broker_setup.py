"""Broker identity: one RabbitMQ user per service and per agency system, with least-privilege permissions,
created through the management HTTP API (``rujukan broker setup``).

RabbitMQ permissions are unanchored regular expressions (``agency.bp3mi.*`` also matches
``agency.bp3mi-kalbar.inbox``), so every pattern here names whole resources: anchored, escaped, alternatives
grouped. https://www.rabbitmq.com/docs/access-control#authorisation
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from shared.contracts.referrals import REPLIES as REPLY_CONTRACTS
from shared.directory import Agency, Directory
from shared.errors import ConfigurationError
from shared.topology import DLX, INTAKE, REPLIES, Topology

if TYPE_CHECKING:
    from faststream.rabbit import RabbitBroker

SERVICES = ("intake", "referral", "notifier")
DEFAULT_EXCHANGE = "amq.default"
"""How permissions name the default exchange (publishing straight to a queue: dead letters, wait queues)."""
NOTHING = "^$"
"""Matches no resource ("" would too; this one says so)."""
OPERATOR_CONSOLE = "referral"
"""The service whose operator console (services/referral/operations) lists, replays and discards the dead letters
of every queue: it reads every ``.dead`` queue, and replays through the default exchange it already writes to."""


def exactly(names: Iterable[str]) -> str:
    """A pattern that matches these names and nothing else, not even a longer name they are a prefix of."""
    unique = sorted(set(names))
    if not unique:
        return NOTHING
    return "^(?:" + "|".join(re.escape(name) for name in unique) + ")$"


@dataclass(frozen=True)
class TopicPermission:
    """The routing keys a user may publish to (``write``) or bind from (``read``) on one topic exchange."""

    exchange: str
    write: str
    read: str = NOTHING


@dataclass(frozen=True)
class BrokerUser:
    """One broker identity and what it may do in the vhost; ``name`` is without the deployment's prefix."""

    name: str
    configure: str
    write: str
    read: str
    topic_permissions: tuple[TopicPermission, ...] = ()


def service_user(name: str, topology: Topology) -> BrokerUser:
    """A service may touch its own part of the topology and nothing else in the vhost. RabbitMQ asks for all
    three rights on it: configure to declare, write on a queue and read on an exchange to bind, read on a queue
    and write on its dead-letter exchange to declare it with one. It publishes to the exchanges of its part and,
    for dead letters and wait queues, straight to queues through the default exchange."""
    part = topology.part(name)
    queues = part.queue_names
    dead_letters = [queue for each in topology.parts.values() for queue in each.queue_names if queue.endswith(".dead")]
    readable = [*queues, *(dead_letters if name == OPERATOR_CONSOLE else [])]
    dead_lettering = [DLX.name] if any(exchange.name == DLX.name for exchange in part.bound_from) else []
    return BrokerUser(
        name=name,
        configure=exactly([*(exchange.name for exchange in part.exchanges), *queues]),
        write=exactly([*(exchange.name for exchange in part.publishes_to), *dead_lettering, DEFAULT_EXCHANGE, *queues]),
        read=exactly([*(exchange.name for exchange in part.bound_from), *readable]),
    )


def _own_queues(agency_id: str, topology: Topology) -> list[str]:
    # Its dead letters are not among them: they are for operators (and may hold a sealed report).
    declared = {spec.queue.name for spec in topology.specs}
    return [queue for queue in (f"agency.{agency_id}.inbox", f"agency.{agency_id}.receipts") if queue in declared]


def police_user(agency: Agency, topology: Topology) -> BrokerUser:
    """Publishes case reports, amendments and withdrawals; reads its own receipts."""
    case_keys = [
        b.routing_key for spec in topology.specs if spec.queue == topology.intake_reports for b in spec.bindings
    ]
    return BrokerUser(
        name=agency.id,
        configure=NOTHING,
        write=exactly([INTAKE.name]),
        read=exactly(_own_queues(agency.id, topology)),
        topic_permissions=(TopicPermission(INTAKE.name, write=exactly(case_keys)),),
    )


def receiving_user(agency: Agency, topology: Topology) -> BrokerUser:
    """Replies only under its own id (``referral.<id>.<event>``); reads its own inbox."""
    keys = [f"referral.{agency.id}.{contract.EVENT}" for contract in REPLY_CONTRACTS]
    return BrokerUser(
        name=agency.id,
        configure=NOTHING,
        write=exactly([REPLIES.name]),
        read=exactly(_own_queues(agency.id, topology)),
        topic_permissions=(TopicPermission(REPLIES.name, write=exactly(keys)),),
    )


def broker_users(directory: Directory, topology: Topology) -> list[BrokerUser]:
    """Every identity a deployment needs: the three services, each police unit and each receiving agency."""
    users = [service_user(name, topology) for name in SERVICES]
    users += [police_user(agency, topology) for agency in directory.police_units()]
    users += [receiving_user(agency, topology) for agency in directory.receiving_agencies()]
    return users


class ManagementError(ConfigurationError):
    """The RabbitMQ management API refused a request or could not be reached."""


class Management:
    """The few calls of the RabbitMQ management HTTP API that setting up identities needs."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._api = base_url.rstrip("/") + "/api"

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self._session.request(method, f"{self._api}{path}", json=body) as response:
                if response.status == 404 and method == "GET":
                    return None
                if response.status >= 300:
                    raise ManagementError(f"management API: {method} {path} answered {response.status}")
                return await response.json() if response.status == 200 and method == "GET" else None
        except aiohttp.ClientError as exc:
            raise ManagementError(f"management API at {self._api} unreachable: {type(exc).__name__}") from None

    async def ensure_vhost(self, vhost: str) -> bool:
        if await self._call("GET", f"/vhosts/{_q(vhost)}") is not None:
            return False
        await self._call("PUT", f"/vhosts/{_q(vhost)}", {})
        return True

    async def permission_holders(self, vhost: str) -> set[str]:
        return {entry["user"] for entry in await self._call("GET", f"/vhosts/{_q(vhost)}/permissions") or []}

    async def revoke(self, vhost: str, username: str) -> None:
        """Takes away everything ``username`` may do in ``vhost``; the user itself stays (users are node-wide)."""
        await self._call("DELETE", f"/permissions/{_q(vhost)}/{_q(username)}")
        topics = f"/topic-permissions/{_q(vhost)}/{_q(username)}"
        if await self._call("GET", topics):
            await self._call("DELETE", topics)

    async def user_exists(self, username: str) -> bool:
        return await self._call("GET", f"/users/{_q(username)}") is not None

    async def vhosts_of(self, username: str) -> set[str]:
        """The vhosts ``username`` holds permissions on."""
        return {entry["vhost"] for entry in await self._call("GET", f"/users/{_q(username)}/permissions") or []}

    async def delete_user(self, username: str) -> None:
        await self._call("DELETE", f"/users/{_q(username)}")

    async def set_password(self, username: str, password: str) -> None:
        # No tags: agency and service users never log in to the management UI.
        await self._call("PUT", f"/users/{_q(username)}", {"password": password, "tags": ""})

    async def ensure_permissions(self, vhost: str, username: str, user: BrokerUser) -> bool:
        path = f"/permissions/{_q(vhost)}/{_q(username)}"
        wanted = {"configure": user.configure, "write": user.write, "read": user.read}
        current = await self._call("GET", path)
        if current is not None and {key: current.get(key) for key in wanted} == wanted:
            return False
        await self._call("PUT", path, wanted)
        return True

    async def ensure_topic_permission(self, vhost: str, username: str, topic: TopicPermission) -> bool:
        path = f"/topic-permissions/{_q(vhost)}/{_q(username)}"
        wanted = {"exchange": topic.exchange, "write": topic.write, "read": topic.read}
        current = await self._call("GET", path) or []
        if any({key: entry.get(key) for key in wanted} == wanted for entry in current):
            return False
        await self._call("PUT", path, wanted)
        return True


async def declare_topology(
    topology: Topology, credentials: Mapping[str, Credentials], broker_for: Callable[[str], RabbitBroker]
) -> None:
    """Each service's part of the topology, declared as that service: the whole of it exists before any service
    starts, so no publish finds a consumer's queue missing, and each user is shown to have the rights it needs."""
    for service in SERVICES:
        broker = broker_for(credentials[service].amqp_url)
        await broker.connect()
        try:
            await topology.part(service).declare(broker)
        finally:
            await broker.stop()


def _q(name: str) -> str:
    return quote(name, safe="")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    amqp_url: str


def amqp_url_for(base_url: str, vhost: str, username: str, password: str) -> str:
    """``base_url``'s scheme, host and port with this user's credentials and the vhost."""
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{_q(username)}:{_q(password)}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/" + _q(vhost), "", ""))


def read_secrets(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path}: not a secrets file written by rujukan broker setup ({exc})") from None
    return loaded


def write_secrets(path: Path, content: dict[str, Any]) -> None:
    """Readable by its owner only, from the first byte (written beside, then renamed over the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.unlink(missing_ok=True)
    # O_EXCL and O_NOFOLLOW: a link planted under the scratch name cannot send the passwords somewhere else.
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(content, file, indent=2)
        file.write("\n")
    os.replace(scratch, path)


@dataclass(frozen=True)
class SetupResult:
    credentials: dict[str, Credentials]
    """By unprefixed name: ``intake``, ``polres-bengkayang``, …"""
    changes: list[str]
    """What this run changed on the broker; empty when it was already as wanted."""


async def set_up_broker(
    management: Management,
    users: Iterable[BrokerUser],
    *,
    vhost: str,
    prefix: str,
    amqp_base_url: str,
    secrets_file: Path,
    rotate: bool = False,
) -> SetupResult:
    """Makes the vhost hold exactly these identities and permissions, and the secrets file their credentials.

    Idempotent: a user the secrets file already knows keeps its password unless ``rotate``; one that exists on
    the broker but not in the file gets a new password (the old one cannot be recovered). A user of the last run
    that is no longer wanted loses its rights here and is deleted.
    """
    known: dict[str, Any] = read_secrets(secrets_file).get("users", {})
    changes: list[str] = []
    if await management.ensure_vhost(vhost):
        changes.append(f"created vhost {vhost}")
    credentials: dict[str, Credentials] = {}
    for user in users:
        username = f"{prefix}{user.name}"
        if username == "guest":
            raise ConfigurationError("refusing to manage the broker user guest: choose another prefix")
        password = known.get(user.name, {}).get("password")
        exists = await management.user_exists(username)
        if rotate or password is None or not exists:
            password = password if password and not rotate else secrets.token_urlsafe(24)
            await management.set_password(username, password)
            changes.append(f"{'rotated' if exists else 'created'} user {username}")
        if await management.ensure_permissions(vhost, username, user):
            changes.append(f"set permissions of {username}")
        for topic in user.topic_permissions:
            if await management.ensure_topic_permission(vhost, username, topic):
                changes.append(f"set topic permissions of {username} on {topic.exchange}")
        credentials[user.name] = Credentials(username, password, amqp_url_for(amqp_base_url, vhost, username, password))
    # Nobody else keeps rights here: not guest, whom the management API gives full rights on a vhost it created,
    # nor the system of an agency since removed from the directory.
    for holder in sorted(await management.permission_holders(vhost) - {c.username for c in credentials.values()}):
        await management.revoke(vhost, holder)
        changes.append(f"revoked the rights of {holder} on {vhost}")
    # Users are node-wide: revoking leaves the password of a removed agency's system able to log in. Only users
    # this deployment made (named in its last secrets file, with its prefix) go, and none another vhost still uses.
    wanted = {c.username for c in credentials.values()}
    for name, entry in sorted(known.items()):
        made = entry.get("username") if isinstance(entry, dict) else None
        if name in credentials or not isinstance(made, str) or not made.startswith(prefix) or made in wanted:
            continue
        if not await management.user_exists(made) or await management.vhosts_of(made):
            continue
        await management.delete_user(made)
        changes.append(f"deleted user {made}")
    write_secrets(
        secrets_file,
        {
            "vhost": vhost,
            # What every service of this deployment needs besides its own RUJUKAN_AMQP_URL.
            "environment": {"RUJUKAN_REQUIRE_USER_ID": "true", "RUJUKAN_BROKER_USER_PREFIX": prefix},
            "users": {
                name: {"username": c.username, "password": c.password, "amqp_url": c.amqp_url}
                for name, c in credentials.items()
            },
        },
    )
    return SetupResult(credentials, changes)
