"""Over the real broker: an agency webhook whose name resolves inside the network is refused when the notifier
connects, and the notification falls back to the agency's email as for any webhook refused for good."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from pydantic import HttpUrl

from shared.contracts.referrals import ReferralDelivered
from shared.directory import Directory, load_directory
from tests.notifying import WEDNESDAY_10_WIB, Clock, NotifierRig, an_issued_referral
from tests.system import CONFIG
from tests.unit.test_webhook_targets import FakeDns

pytestmark = pytest.mark.rabbit


def webhooks_by_name(directory: Directory) -> Directory:
    """Every agency webhook addressed by a name (``<agency>.hooks.example``) instead of the sink's 127.0.0.1."""
    agencies = tuple(
        agency.model_copy(
            update={
                "webhook": agency.webhook.model_copy(
                    update={"url": HttpUrl(str(agency.webhook.url).replace("127.0.0.1", f"{agency.id}.hooks.example"))}
                )
            }
        )
        if agency.webhook
        else agency
        for agency in directory.agencies
    )
    return directory.model_copy(update={"agencies": agencies})


def dns_answering(address: str) -> FakeDns:
    """Every agency webhook's name resolves to ``address``."""
    agencies = load_directory(CONFIG).agencies
    return FakeDns({f"{agency.id}.hooks.example": [[address]] for agency in agencies if agency.webhook})


async def deliver_one_referral(
    amqp_url: str, tmp_path: Path, *, allowed: tuple[str, ...]
) -> tuple[NotifierRig, ReferralDelivered]:
    """Every webhook's name resolves to 127.0.0.1, where the test's webhook sink listens."""

    def adjust(directory: Directory) -> Directory:
        networks = tuple(ipaddress.ip_network(network) for network in allowed)
        return webhooks_by_name(directory).model_copy(update={"private_webhook_networks": networks})

    rig = NotifierRig(
        amqp_url, tmp_path, clock=Clock(WEDNESDAY_10_WIB), adjust=adjust, resolver=dns_answering("127.0.0.1")
    )
    await rig.start()
    try:
        await rig.publish(an_issued_referral())
        reports = await rig.reports(2)
    finally:
        await rig.stop()
    [agency] = [report for report in reports if report.recipient == "agency"]
    assert isinstance(agency, ReferralDelivered)
    return rig, agency


async def test_a_webhook_name_resolving_to_a_loopback_address_not_allowed_is_refused_and_email_takes_over(
    amqp_url: str, tmp_path: Path
) -> None:
    rig, report = await deliver_one_referral(amqp_url, tmp_path, allowed=())

    assert report.channel == "email"
    assert rig.sink.requests["dinsos-bengkayang"] == 0
    assert rig.smtp.to("meja.dinsos-bengkayang@example.org")


async def test_a_webhook_name_resolving_inside_an_allowed_network_is_delivered(amqp_url: str, tmp_path: Path) -> None:
    rig, report = await deliver_one_referral(amqp_url, tmp_path, allowed=("127.0.0.1/32",))

    assert report.channel == "webhook"
    assert rig.sink.requests["dinsos-bengkayang"] == 1
