"""TLS to the broker with certificates made in the test (trustme): a local TLS server that insists on a client
certificate checks the context make_broker builds, and a throwaway RabbitMQ node that listens only for TLS (never
the shared broker on 5672) checks that a service connects with it (FASTSTREAM.md, "Chaos tests")."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import trustme
from pydantic import ValidationError

from shared.broker import make_broker, tls_context
from shared.settings import Settings
from tests.system import free_port
from tests.throwaway_node import throwaway_node


def tls_settings(
    tmp_path: Path,
    ca: trustme.CA,
    *,
    client: trustme.LeafCert | None = None,
    port: int = 5671,
    user: str = "rujukan-intake:secret",
    vhost: str = "rujukan",
) -> Settings:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    files: dict[str, Any] = {"amqp_ca_file": ca_file}
    if client is not None:
        files["amqp_cert_file"] = tmp_path / "client.pem"
        files["amqp_key_file"] = tmp_path / "client.key"
        client.cert_chain_pems[0].write_to_path(str(files["amqp_cert_file"]))
        client.private_key_pem.write_to_path(str(files["amqp_key_file"]))
    return Settings(amqp_url=f"amqps://{user}@localhost:{port}/{vhost}", **files)


@asynccontextmanager
async def tls_server(ca: trustme.CA, port: int, seen: list[Any]) -> AsyncIterator[None]:
    """Answers one byte to a client whose certificate the CA signed, as a broker with ``verify_peer`` would."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peercert"))
        writer.write(b"!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", port, ssl=context)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def handshake(context: ssl.SSLContext, port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        return await reader.read(1)
    finally:
        writer.close()


async def test_the_broker_context_trusts_the_configured_ca_and_presents_the_client_certificate(
    tmp_path: Path,
) -> None:
    ca, port, seen = trustme.CA(), free_port(), []
    context = tls_context(tls_settings(tmp_path, ca, client=ca.issue_cert("rujukan-intake"), port=port))
    assert context is not None

    async with tls_server(ca, port, seen):
        assert await handshake(context, port) == b"!"

    [peer] = seen
    assert ("DNS", "rujukan-intake") in peer["subjectAltName"]


async def test_a_broker_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    ours, theirs, port = trustme.CA(), trustme.CA(), free_port()
    context = tls_context(tls_settings(tmp_path, ours, client=ours.issue_cert("rujukan-intake"), port=port))
    assert context is not None

    async with tls_server(theirs, port, []):
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(context, port)


def test_make_broker_connects_with_the_tls_context_and_verifies_the_host_name(tmp_path: Path) -> None:
    broker = make_broker(tls_settings(tmp_path, trustme.CA()), app_id="rujukan-intake")

    context = broker._connection_kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert broker._connection_kwargs["url"].startswith("amqps://")


def test_a_plain_amqp_url_has_no_tls_and_refuses_certificate_settings(tmp_path: Path) -> None:
    assert tls_context(Settings(amqp_url="amqp://guest:guest@127.0.0.1:5672/")) is None
    with pytest.raises(ValidationError, match="amqps://"):
        Settings(amqp_url="amqp://guest:guest@127.0.0.1:5672/", amqp_ca_file=tmp_path / "ca.pem")


@dataclass(frozen=True)
class TlsNode:
    ca: trustme.CA
    port: int


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    """A RabbitMQ node of its own that accepts only TLS clients with a certificate its CA signed."""
    home, ca = tmp_path_factory.mktemp("tls-node"), trustme.CA()
    ca.cert_pem.write_to_path(str(home / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(home / "server.pem"))
    config = (
        "listeners.tcp = none\n"
        "listeners.ssl.default = {port}\n"
        f"ssl_options.cacertfile = {home / 'ca.pem'}\n"
        f"ssl_options.certfile = {home / 'server.pem'}\n"
        f"ssl_options.keyfile = {home / 'server.pem'}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "loopback_users = none\n"
    )
    with throwaway_node(home, "tls", config=config) as port:
        yield TlsNode(ca, port)


@pytest.mark.rabbit
async def test_a_service_connects_to_a_tls_only_broker_with_its_client_certificate(
    tls_node: TlsNode, tmp_path: Path
) -> None:
    client = tls_node.ca.issue_cert("rujukan-intake")
    settings = tls_settings(tmp_path, tls_node.ca, client=client, port=tls_node.port, user="guest:guest", vhost="")
    broker = make_broker(settings, app_id="rujukan-intake")
    await broker.connect()
    try:
        assert await broker.ping(timeout=5)
    finally:
        await broker.stop()


@pytest.mark.rabbit
async def test_a_tls_broker_refuses_a_service_without_a_client_certificate(tls_node: TlsNode, tmp_path: Path) -> None:
    broker = make_broker(
        tls_settings(tmp_path, tls_node.ca, port=tls_node.port, user="guest:guest", vhost=""), app_id="rujukan-intake"
    )

    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await asyncio.wait_for(broker.connect(), timeout=15)
