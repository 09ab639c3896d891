"""The directory lists the networks outside the public internet that webhooks may reach, and refuses at load a
webhook written as an address outside them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from shared.directory import load_directory
from shared.errors import ConfigurationError
from tests.system import CONFIG

DINSOS_BENGKAYANG_WEBHOOK = "http://127.0.0.1:8099/webhooks/dinsos-bengkayang"


def shipped_with(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = CONFIG.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "directory.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_directory_allows_loopback_only_for_its_own_desks() -> None:
    assert load_directory(CONFIG).private_webhook_networks == (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.mark.parametrize(
    "url",
    ["http://10.20.30.40/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]:8099/hook", "http://0.0.0.0/"],
)
def test_a_webhook_written_as_an_address_outside_the_allowed_networks_is_refused_naming_the_agency(
    tmp_path: Path, url: str
) -> None:
    path = shipped_with(tmp_path, (DINSOS_BENGKAYANG_WEBHOOK, url))

    with pytest.raises(ConfigurationError) as refused:
        load_directory(path)

    assert "(agency 'dinsos-bengkayang'): webhook address" in str(refused.value)
    assert "is not public and not in private_webhook_networks" in str(refused.value)


def test_without_allowed_networks_the_demos_loopback_webhooks_are_refused(tmp_path: Path) -> None:
    path = shipped_with(tmp_path, ("private_webhook_networks: [127.0.0.1/32]", "private_webhook_networks: []"))

    with pytest.raises(ConfigurationError) as refused:
        load_directory(path)

    assert "(agency 'dinsos-bengkayang'): webhook address 127.0.0.1 is not public" in str(refused.value)


def test_a_webhook_by_name_or_inside_an_allowed_network_loads(tmp_path: Path) -> None:
    path = shipped_with(
        tmp_path,
        (DINSOS_BENGKAYANG_WEBHOOK, "http://10.20.30.40/hook"),
        ("private_webhook_networks: [127.0.0.1/32]", "private_webhook_networks: [127.0.0.1/32, 10.20.0.0/16]"),
        ("http://127.0.0.1:8099/webhooks/dinsos-kalbar", "https://hooks.dinsos.kalbarprov.example/rujukan"),
    )

    directory = load_directory(path)

    assert len(directory.private_webhook_networks) == 2


def test_an_allowed_network_must_be_written_as_a_network(tmp_path: Path) -> None:
    path = shipped_with(
        tmp_path, ("private_webhook_networks: [127.0.0.1/32]", "private_webhook_networks: [127.0.0.1/8]")
    )

    with pytest.raises(ConfigurationError, match="private_webhook_networks"):
        load_directory(path)


def test_a_webhook_secret_that_does_not_decode_is_refused_at_load_naming_the_agency(tmp_path: Path) -> None:
    """Found by review: the pattern let through a key of 21 base64 characters, which the signer cannot decode; every
    send to that agency failed, and the failure was not one the notifier knew to give up on."""
    path = shipped_with(
        tmp_path,
        ("whsec_qzF8hJj6g0sds8kSRguXzuSouRw3e8zUf8VQPh/nwHw=", "whsec_qzF8hJj6g0sds8kSRguXz"),
    )

    with pytest.raises(ConfigurationError) as refused:
        load_directory(path)

    assert "webhook.secret (agency 'dinsos-kalbar'): Value error, is not base64 after whsec_" in str(refused.value)
