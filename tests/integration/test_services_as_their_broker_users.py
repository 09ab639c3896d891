"""The three services configured as compose runs them: only RUJUKAN_BROKER_SECRETS_FILE, no RUJUKAN_AMQP_URL. Each
logs in as its own least-privilege user of ``rujukan broker setup``, and a whole case still flows."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from shared.settings import Settings
from tests.builders import a_case_report_body, the_sample_victims
from tests.integration.test_broker_setup import Deployment, deployed
from tests.rabbit import AMQP_BASE, MANAGEMENT_URL
from tests.system import System, WebhookSink, delivered_everywhere, directory_for, eventually, settings_for

pytestmark = pytest.mark.rabbit

_ADMIN = {"Authorization": aiohttp.encode_basic_auth("guest", "guest")}


def from_secrets_file(deployment: Deployment, tmp_path: Path) -> Settings:
    """The test's settings with the broker left to the secrets file, as if read from a compose environment."""
    base = settings_for(AMQP_BASE, tmp_path)
    values = base.model_dump(exclude={"amqp_url", "require_user_id", "broker_user_prefix", "broker_secrets_file"})
    return Settings(**values, broker_secrets_file=deployment.secrets_file)


async def connected_users(vhost: str) -> set[str]:
    async with (
        aiohttp.ClientSession(headers=_ADMIN, base_url=MANAGEMENT_URL) as session,
        session.get(f"/api/vhosts/{quote(vhost, safe='')}/connections") as response,
    ):
        return {connection["user"] for connection in await response.json()}


async def test_services_with_only_the_secrets_file_run_a_case_as_their_own_broker_users(
    sink: WebhookSink, tmp_path: Path
) -> None:
    directory = directory_for(sink)
    sink.directory = directory
    async with deployed(directory, tmp_path) as deployment:
        system = System(from_secrets_file(deployment, tmp_path), directory, sink, ("intake", "referral", "notifier"))
        await system.start()
        try:
            response = await system.report(a_case_report_body(victims=the_sample_victims()))
            assert response.status_code == 202
            case = await system.case_when(response.json()["case_id"], delivered_everywhere, timeout=30)
            own_users = {deployment.username(name) for name in ("intake", "referral", "notifier")}

            async def every_service_connected() -> bool:
                return own_users <= await connected_users(deployment.vhost)

            # The management API lists a connection only at its next statistics round.
            await eventually(every_service_connected, timeout=30)
            users = await connected_users(deployment.vhost)
        finally:
            await system.stop()

    assert users == own_users
    delivered = {delivery.agency_id for delivery in sink.deliveries}
    assert delivered == {leg["agency_id"] for leg in case["referrals"]}
