"""``rujukan broker setup`` against the real broker: what each identity it creates may and may not do."""

from __future__ import annotations

import asyncio
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aio_pika
import aiohttp
import pytest
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed

from services.cli import main
from shared.broker import make_broker
from shared.broker_setup import (
    SERVICES,
    BrokerUser,
    Management,
    SetupResult,
    broker_users,
    declare_topology,
    read_secrets,
    set_up_broker,
)
from shared.directory import Directory, load_directory
from shared.topology import build_topology
from tests.rabbit import AMQP_BASE, MANAGEMENT_URL
from tests.system import CONFIG, settings_for
from tests.unit.test_broker_permissions import with_longer_namesake

pytestmark = pytest.mark.rabbit

_ADMIN = {"Authorization": aiohttp.encode_basic_auth("guest", "guest")}


@dataclass
class Deployment:
    vhost: str
    prefix: str
    secrets_file: Path
    directory: Directory
    result: SetupResult

    def url(self, name: str) -> str:
        return self.result.credentials[name].amqp_url

    def username(self, name: str) -> str:
        return self.result.credentials[name].username

    async def set_up(self, *, rotate: bool = False) -> SetupResult:
        return await _set_up(self.directory, self.vhost, self.prefix, self.secrets_file, rotate=rotate)


async def _set_up(directory: Directory, vhost: str, prefix: str, secrets_file: Path, *, rotate: bool) -> SetupResult:
    async with aiohttp.ClientSession(headers=_ADMIN) as session:
        return await set_up_broker(
            Management(session, MANAGEMENT_URL),
            broker_users(directory, build_topology(directory, (1.0, 2.0))),
            vhost=vhost,
            prefix=prefix,
            amqp_base_url=AMQP_BASE,
            secrets_file=secrets_file,
            rotate=rotate,
        )


async def remove(vhost: str, prefix: str) -> None:
    """Users are global to the node: every one this test made goes, and its vhost with them."""
    async with aiohttp.ClientSession(headers=_ADMIN, base_url=MANAGEMENT_URL) as session:
        async with session.get("/api/users") as response:
            users = [user["name"] for user in await response.json() if user["name"].startswith(prefix)]
        for name in users:
            async with session.delete(f"/api/users/{quote(name, safe='')}"):
                pass
        async with session.delete(f"/api/vhosts/{quote(vhost, safe='')}"):
            pass


async def holders_of(vhost: str) -> set[str]:
    async with (
        aiohttp.ClientSession(headers=_ADMIN, base_url=MANAGEMENT_URL) as session,
        session.get(f"/api/vhosts/{quote(vhost, safe='')}/permissions") as response,
    ):
        return {entry["user"] for entry in await response.json()}


@asynccontextmanager
async def deployed(directory: Directory, tmp_path: Path) -> AsyncIterator[Deployment]:
    """A vhost and broker users of their own, set up as ``rujukan broker setup`` does, each part of the topology
    declared by its service's own user; removed afterwards, even when the test fails."""
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"rujukan-setup-{tag}", f"t{tag}-"
    secrets_file = tmp_path / "broker-secrets.json"
    try:
        result = await _set_up(directory, vhost, prefix, secrets_file, rotate=False)
        await declare_topology(
            build_topology(directory, (1.0, 2.0)),
            result.credentials,
            lambda url: make_broker(settings_for(url, tmp_path), app_id="setup-test"),
        )
        yield Deployment(vhost, prefix, secrets_file, directory, result)
    finally:
        await remove(vhost, prefix)


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(with_longer_namesake(), tmp_path) as deployment:
        yield deployment


@asynccontextmanager
async def channel_of(url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish(url: str, exchange: str, routing_key: str, *, user_id: str | None = None) -> None:
    async with channel_of(url) as channel:
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(b"{}", user_id=user_id), routing_key=routing_key, timeout=5)


async def read(url: str, queue: str) -> None:
    async with channel_of(url) as channel:
        declared = await channel.get_queue(queue, ensure=False)
        await declared.get(fail=False, timeout=5)


async def test_setup_makes_a_user_for_each_service_and_agency_system_none_of_them_guest(
    deployment: Deployment,
) -> None:
    directory = deployment.directory
    agencies = {a.id for a in (*directory.police_units(), *directory.receiving_agencies())}

    assert set(deployment.result.credentials) == {*SERVICES, *agencies}
    for credentials in deployment.result.credentials.values():
        assert credentials.username.startswith(deployment.prefix)
        assert "guest" not in credentials.amqp_url
        async with channel_of(credentials.amqp_url):
            pass


async def test_only_the_users_of_the_setup_have_rights_on_its_vhost_not_guest(deployment: Deployment) -> None:
    """The management API gave guest, which created the vhost, full rights on it; setup took them back."""
    holders = await holders_of(deployment.vhost)

    assert holders == {credentials.username for credentials in deployment.result.credentials.values()}


async def test_the_secrets_file_is_readable_by_its_owner_only_and_requires_user_id(deployment: Deployment) -> None:
    secrets = read_secrets(deployment.secrets_file)

    assert stat.S_IMODE(deployment.secrets_file.stat().st_mode) == 0o600
    assert secrets["users"]["intake"]["amqp_url"] == deployment.url("intake")
    assert secrets["environment"] == {
        "RUJUKAN_REQUIRE_USER_ID": "true",
        "RUJUKAN_BROKER_USER_PREFIX": deployment.prefix,
    }


async def test_running_setup_again_changes_nothing_and_rotate_changes_only_passwords(deployment: Deployment) -> None:
    again = await deployment.set_up()

    assert again.changes == []
    assert again.credentials == deployment.result.credentials

    rotated = await deployment.set_up(rotate=True)

    assert all(change.startswith("rotated user") for change in rotated.changes)
    assert rotated.credentials["intake"].password != deployment.result.credentials["intake"].password
    async with channel_of(rotated.credentials["intake"].amqp_url):
        pass
    with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(deployment.url("intake"))


async def test_an_agency_removed_from_the_directory_loses_its_rights_on_the_next_run(deployment: Deployment) -> None:
    removed = deployment.username("dinsos-kalbar-utara")
    # A user of the deployment's prefix that it did not make (not in its secrets file) loses its rights, and stays.
    stranger = f"{deployment.prefix}stranger"
    async with aiohttp.ClientSession(headers=_ADMIN) as session:
        management = Management(session, MANAGEMENT_URL)
        await management.set_password(stranger, "not-ours")
        await management.ensure_permissions(deployment.vhost, stranger, BrokerUser(stranger, ".*", ".*", ".*"))
    deployment.directory = load_directory(CONFIG)

    again = await deployment.set_up()

    assert f"revoked the rights of {removed} on {deployment.vhost}" in again.changes
    assert f"deleted user {removed}" in again.changes
    assert not [change for change in again.changes if change.startswith(("created", "rotated"))]
    assert removed not in await holders_of(deployment.vhost)
    assert "dinsos-kalbar-utara" not in read_secrets(deployment.secrets_file)["users"]
    with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(deployment.url("dinsos-kalbar-utara"))
    assert f"revoked the rights of {stranger} on {deployment.vhost}" in again.changes
    assert f"deleted user {stranger}" not in again.changes
    async with aiohttp.ClientSession(headers=_ADMIN) as session:
        assert await Management(session, MANAGEMENT_URL).user_exists(stranger)


async def test_the_notifier_reads_no_intake_or_agency_queue_and_cannot_publish_to_intake(
    deployment: Deployment,
) -> None:
    notifier = deployment.url("notifier")
    await read(notifier, "notifier.notifications")

    for queue in ("intake.reports", "intake.reports.dead", "agency.dinsos-bengkayang.inbox",
                  "agency.polres-bengkayang.receipts", "referral.replies"):  # fmt: skip
        with pytest.raises(ChannelAccessRefused):
            await read(notifier, queue)
    with pytest.raises(ChannelAccessRefused):
        await publish(notifier, "rujukan.intake", "case.report")


async def test_referral_reads_every_dead_letter_queue_for_its_operators_but_no_other_services_work_queue(
    deployment: Deployment,
) -> None:
    referral = deployment.url("referral")
    for queue in ("intake.reports.dead", "notifier.notifications.dead", "agency.polres-bengkayang.receipts.dead"):
        await read(referral, queue)

    for queue in ("intake.reports", "notifier.notifications", "agency.polres-bengkayang.receipts"):
        with pytest.raises(ChannelAccessRefused):
            await read(referral, queue)


async def test_intake_reads_no_referral_or_notifier_queue(deployment: Deployment) -> None:
    intake = deployment.url("intake")
    await read(intake, "intake.reports")

    for queue in ("referral.cases", "referral.replies", "notifier.referrals", "notifier.notifications.wait.1s"):
        with pytest.raises(ChannelAccessRefused):
            await read(intake, queue)


async def test_an_agency_reads_its_own_inbox_and_is_refused_another_agencys(deployment: Deployment) -> None:
    await read(deployment.url("dinsos-bengkayang"), "agency.dinsos-bengkayang.inbox")

    with pytest.raises(ChannelAccessRefused):
        await read(deployment.url("dinsos-bengkayang"), "agency.bp3mi-kalbar.inbox")
    with pytest.raises(ChannelAccessRefused):
        await read(deployment.url("polres-sambas"), "agency.polres-bengkayang.receipts")
    with pytest.raises(ChannelAccessRefused):
        await read(deployment.url("dinsos-bengkayang"), "agency.dinsos-bengkayang.inbox.dead")


async def test_an_agency_replies_under_its_own_id_and_is_refused_another_agencys_routing_key(
    deployment: Deployment,
) -> None:
    await publish(deployment.url("dinsos-bengkayang"), "rujukan.replies", "referral.dinsos-bengkayang.acknowledged")

    with pytest.raises(ChannelAccessRefused):
        await publish(deployment.url("dinsos-bengkayang"), "rujukan.replies", "referral.bp3mi-kalbar.acknowledged")
    with pytest.raises(ChannelAccessRefused):
        await publish(deployment.url("dinsos-bengkayang"), "rujukan.events", "referral.dinsos-bengkayang.issued")


async def test_a_police_unit_publishes_only_case_keys_to_intake(deployment: Deployment) -> None:
    await publish(deployment.url("polres-bengkayang"), "rujukan.intake", "case.report")

    with pytest.raises(ChannelAccessRefused):
        await publish(deployment.url("polres-bengkayang"), "rujukan.intake", "case.reported")
    with pytest.raises(ChannelAccessRefused):
        await publish(deployment.url("polres-bengkayang"), "rujukan.replies", "referral.dinsos-bengkayang.accepted")


async def test_an_agency_whose_id_is_a_prefix_of_another_gets_nothing_of_the_longer_ones(
    deployment: Deployment,
) -> None:
    with pytest.raises(ChannelAccessRefused):
        await read(deployment.url("dinsos-kalbar"), "agency.dinsos-kalbar-utara.inbox")
    with pytest.raises(ChannelAccessRefused):
        await publish(deployment.url("dinsos-kalbar"), "rujukan.replies", "referral.dinsos-kalbar-utara.acknowledged")


async def test_a_forged_user_id_is_refused_by_the_broker(deployment: Deployment) -> None:
    own = deployment.username("dinsos-bengkayang")
    await publish(
        deployment.url("dinsos-bengkayang"), "rujukan.replies", "referral.dinsos-bengkayang.held", user_id=own
    )

    with pytest.raises(ChannelPreconditionFailed):
        await publish(
            deployment.url("dinsos-bengkayang"),
            "rujukan.replies",
            "referral.dinsos-bengkayang.held",
            user_id=deployment.username("bp3mi-kalbar"),
        )


def test_the_broker_setup_command_writes_the_secrets_file_and_a_second_run_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"rujukan-cli-{tag}", f"c{tag}-"
    monkeypatch.setenv("RUJUKAN_CONFIG", str(CONFIG))
    monkeypatch.setenv("RUJUKAN_BROKER_USER_PREFIX", prefix)
    secrets_file = tmp_path / "secrets.json"
    try:
        assert main(["broker", "setup", "--vhost", vhost, "--secrets", str(secrets_file)]) == 0
        first = capsys.readouterr().out
        assert main(["broker", "setup", "--vhost", vhost, "--secrets", str(secrets_file)]) == 0
        second = capsys.readouterr().out
    finally:
        asyncio.run(remove(vhost, prefix))

    users = read_secrets(secrets_file)["users"]
    assert f"created user {prefix}intake" in first
    assert first.count("created user") == len(users)
    assert second.splitlines() == [
        f"{len(users)} broker users ready; their AMQP URLs are in {secrets_file} (mode 0600)"
    ]
