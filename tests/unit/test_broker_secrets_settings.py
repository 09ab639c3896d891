"""RUJUKAN_BROKER_SECRETS_FILE: a service takes its own broker user, and the deployment's broker settings, from the
file ``rujukan broker setup`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cli import main
from shared.errors import ConfigurationError
from shared.settings import Settings


def a_secrets_file(tmp_path: Path, **environment: str) -> Path:
    path = tmp_path / "broker-secrets.json"
    users = {
        name: {"username": f"d-{name}", "password": "pw", "amqp_url": f"amqp://d-{name}:pw@rabbitmq:5672/rujukan"}
        for name in ("intake", "referral", "notifier")
    }
    environment = environment or {"RUJUKAN_REQUIRE_USER_ID": "true", "RUJUKAN_BROKER_USER_PREFIX": "d-"}
    path.write_text(json.dumps({"vhost": "rujukan", "environment": environment, "users": users}))
    return path


def test_each_service_logs_in_as_its_own_user_with_the_deployments_settings(tmp_path: Path) -> None:
    settings = Settings(broker_secrets_file=a_secrets_file(tmp_path))

    notifier = settings.for_service("notifier")

    assert (notifier.amqp_url.host, notifier.amqp_url.path) == ("rabbitmq", "/rujukan")
    assert notifier.amqp_url.username == "d-notifier"
    assert settings.for_service("intake").amqp_url.username == "d-intake"
    assert notifier.require_user_id is True
    assert notifier.broker_user_prefix == "d-"


def test_without_a_secrets_file_the_settings_are_the_services_own() -> None:
    settings = Settings(amqp_url="amqp://someone:pw@broker:5672/")

    assert settings.for_service("referral") is settings


def test_an_amqp_url_beside_the_secrets_file_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(amqp_url="amqp://rujukan:admin@rabbitmq:5672/", broker_secrets_file=a_secrets_file(tmp_path))

    assert "RUJUKAN_AMQP_URL and RUJUKAN_BROKER_SECRETS_FILE are both set" in str(refused.value)


def test_a_setting_that_contradicts_the_secrets_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(require_user_id=False, broker_secrets_file=a_secrets_file(tmp_path))

    with pytest.raises(ConfigurationError, match="RUJUKAN_REQUIRE_USER_ID contradicts"):
        settings.for_service("intake")


def test_a_missing_file_or_service_is_a_configuration_error_that_quotes_no_password(tmp_path: Path) -> None:
    missing = Settings(broker_secrets_file=tmp_path / "nowhere.json")
    path = a_secrets_file(tmp_path)
    document = json.loads(path.read_text())
    del document["users"]["referral"]
    path.write_text(json.dumps(document))

    with pytest.raises(ConfigurationError, match="no AMQP URL for the intake service"):
        missing.for_service("intake")
    with pytest.raises(ConfigurationError, match="no AMQP URL for the referral service") as refused:
        Settings(broker_secrets_file=path).for_service("referral")
    assert "pw" not in str(refused.value)


def test_the_command_refuses_an_amqp_url_beside_the_secrets_file_in_one_line_with_the_configuration_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUJUKAN_AMQP_URL", "amqp://rujukan:admin-password@rabbitmq:5672/")
    monkeypatch.setenv("RUJUKAN_BROKER_SECRETS_FILE", str(a_secrets_file(tmp_path)))

    code = main(["directory", "check"])

    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("rujukan: RUJUKAN_AMQP_URL and RUJUKAN_BROKER_SECRETS_FILE are both set")
    assert len(error.splitlines()) == 1
    assert "admin-password" not in error
