"""docker-compose.yml and the Dockerfile checked against the code they run.

No Docker engine runs where the tests run, so nothing here starts a container: the files are parsed and compared
with the real ``rujukan`` parser, ``Settings`` and ``pyproject.toml``, which is where they drift apart.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import import_module
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.cli import SERVICES, _parser
from shared.broker import CONSUMER_GRACE_SECONDS
from shared.service import HTTP_GRACE_SECONDS
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
IMAGE_WORKDIR = PurePosixPath("/app")

SECRET_VARIABLES = (
    "RABBITMQ_PASSWORD",
    "POSTGRES_PASSWORD",
    "RUJUKAN_IDENTITY_KEY",
    "RUJUKAN_LINK_KEY",
    "RUJUKAN_SMS_GATEWAY_TOKEN",
)
DATABASE_SERVICES = ("intake", "referral", "notifier")

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_READYZ_PROBE = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(?P<port>\d+)/readyz\b")


@cache
def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _service(name: str) -> dict[str, Any]:
    services = _compose().get("services") or {}
    assert name in services, f"docker-compose.yml has no {name!r} service"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _environment(service: dict[str, Any]) -> dict[str, str]:
    # Compose accepts both a mapping and a list of KEY=VALUE strings.
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def _interpolate(text: str) -> str:
    """What compose would substitute, with a stand-in for each required secret."""

    def substitute(match: re.Match[str]) -> str:
        if match["op"] in (":-", "-"):
            return match["arg"]
        return f"test-{match['name'].lower().replace('_', '-')}"

    return _INTERPOLATION.sub(substitute, text)


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            # "[host_ip:][host_port:]container_port[/protocol]": the container side is always last.
            ports.add(int(str(entry).split("/", 1)[0].rsplit(":", 1)[-1]))
    return ports


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    assert test, "no healthcheck"
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"healthcheck test must start with CMD or CMD-SHELL, not {test[0]!r}"
    return " ".join(test[1:])


def _rujukan_services() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in SERVICES:
        yield name, _service(name)


@cache
def _dockerfile_final_stage() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) of the stage that becomes the image: what runs is decided there."""
    instructions: list[tuple[str, str]] = []
    logical = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not (stripped or logical):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        if logical.strip():
            keyword, _, arguments = logical.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
        logical = ""
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return tuple(instructions[starts[-1] :])


def _dockerfile_exec_form(keyword: str) -> list[str]:
    values = [arguments for name, arguments in _dockerfile_final_stage() if name == keyword]
    assert values, f"the image has no {keyword}"
    # Only the last one counts; the exec (JSON) form is required so that signals reach rujukan, not a shell.
    parsed = yaml.safe_load(values[-1])
    assert isinstance(parsed, list), f'{keyword} must use the exec form, e.g. {keyword} ["rujukan"]'
    return [str(part) for part in parsed]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in _dockerfile_final_stage():
        if keyword == "ENV":
            for word in shlex.split(arguments):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def _settings_field(variable: str) -> str:
    return variable.removeprefix("RUJUKAN_").lower()


def _default_port(service: str) -> int:
    default = Settings.model_fields[f"{service}_port"].default
    assert isinstance(default, int)
    return default


@pytest.mark.parametrize("name", SERVICES)
def test_every_compose_service_runs_a_real_rujukan_subcommand(name: str) -> None:
    command = _service(name).get("command")
    assert isinstance(command, list), f"{name}: command must be a list such as [{name!r}]"
    try:
        args = _parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"{name}: `rujukan {' '.join(command)}` is rejected by the rujukan command line")
    assert args.command == name, f"the {name} service runs `rujukan {args.command}` instead of `rujukan {name}`"


def test_image_default_command_is_a_real_rujukan_subcommand() -> None:
    command = _dockerfile_exec_form("CMD")
    try:
        _parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"the image's default `rujukan {' '.join(command)}` is rejected by the rujukan command line")


def test_every_rujukan_variable_in_compose_is_a_settings_field() -> None:
    # pydantic-settings silently ignores an unknown RUJUKAN_* variable, so a typo would quietly fall back to a
    # demo default (the guest broker user, a SQLite file) instead of failing.
    names: set[str] = set()
    for service in (_compose().get("services") or {}).values():
        names.update(key for key in _environment(service) if key.startswith("RUJUKAN_"))
    names.update(
        match["name"]
        for match in _INTERPOLATION.finditer(COMPOSE_FILE.read_text())
        if match["name"].startswith("RUJUKAN_")
    )
    assert names, "docker-compose.yml sets no RUJUKAN_* variable"
    unknown = sorted(name for name in names if _settings_field(name) not in Settings.model_fields)
    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"


def test_every_rujukan_variable_in_the_image_is_a_settings_field() -> None:
    names = {name for name in _dockerfile_env() if name.startswith("RUJUKAN_")}
    unknown = sorted(name for name in names if _settings_field(name) not in Settings.model_fields)
    assert not unknown, f"Dockerfile ENV names that are not fields of shared.settings.Settings: {unknown}"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_environment_loads_as_production_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in list(os.environ):
        if variable.startswith("RUJUKAN_"):
            monkeypatch.delenv(variable)
    for variable, value in {**_dockerfile_env(), **_environment(_service(name))}.items():
        if variable.startswith("RUJUKAN_"):
            monkeypatch.setenv(variable, _interpolate(value))

    settings = Settings()

    assert settings.environment == "production"
    # Inside a container 127.0.0.1 cannot be reached through a published port.
    assert settings.http_host == "0.0.0.0"  # noqa: S104
    # Its AMQP URL (host rabbitmq) comes from the secrets file broker-setup writes; see the broker tests below.
    assert settings.broker_secrets_file is not None
    config = PurePosixPath(str(settings.config))
    assert config.is_relative_to(IMAGE_WORKDIR), f"RUJUKAN_CONFIG {config} is not inside the image's {IMAGE_WORKDIR}"
    assert (ROOT / config.relative_to(IMAGE_WORKDIR)).is_file(), f"RUJUKAN_CONFIG {config} is not a file in the repo"


def test_image_ships_the_config_directory_where_compose_points() -> None:
    copies = [arguments.split() for keyword, arguments in _dockerfile_final_stage() if keyword == "COPY"]
    targets = {
        PurePosixPath(parts[-1]) if parts[-1].startswith("/") else IMAGE_WORKDIR / parts[-1]
        for parts in copies
        if any(source.rstrip("/") == "config" for source in parts[:-1])
    }
    assert IMAGE_WORKDIR / "config" in targets, "the image does not COPY config/ to /app/config"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_publishes_its_default_settings_port(name: str) -> None:
    service = _service(name)
    port = _default_port(name)
    overridden = _environment(service).get(f"RUJUKAN_{name.upper()}_PORT")
    assert overridden in (None, str(port)), f"{name} listens on {overridden} but publishes the default {port}"
    assert _container_ports(service) == {port}


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_healthcheck_probes_readyz_on_its_own_port(name: str) -> None:
    command = _healthcheck_command(_service(name))
    probes = [int(match["port"]) for match in _READYZ_PROBE.finditer(command)]
    assert probes == [_default_port(name)], f"{name}: healthcheck {command!r} does not probe its own /readyz"
    # python:3.11-slim has neither curl nor wget; a probe using them never succeeds.
    assert not re.search(r"\b(curl|wget)\b", command)


def test_image_exposes_every_service_port() -> None:
    exposed = {
        int(port.split("/", 1)[0])
        for keyword, arguments in _dockerfile_final_stage()
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    assert exposed == {_default_port(name) for name in SERVICES}


def _broker_setup_command() -> argparse.Namespace:
    command = _service("broker-setup").get("command")
    assert isinstance(command, list), "broker-setup: command must be a list"
    try:
        return _parser().parse_args([_interpolate(str(part)) for part in command])
    except SystemExit:
        pytest.fail(f"broker-setup: `rujukan {' '.join(command)}` is rejected by the rujukan command line")


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (volume, read-only) of the named volumes in short syntax."""
    mounts = {}
    for entry in service.get("volumes") or []:
        source, target, *options = str(entry).split(":")
        mounts[target] = (source, "ro" in options)
    return mounts


def test_broker_setup_runs_rujukan_broker_setup_as_the_broker_admin_against_the_compose_rabbitmq() -> None:
    args = _broker_setup_command()
    broker_env = _environment(_service("rabbitmq"))

    assert (args.command, args.action) == ("broker", "setup")
    assert urlsplit(args.management_url).hostname == "rabbitmq"
    assert args.admin_user == broker_env["RABBITMQ_DEFAULT_USER"] != "guest"
    assert args.admin_password == _interpolate(broker_env["RABBITMQ_DEFAULT_PASS"])
    assert not args.rotate, "a rotation on every `up` would break agency systems' passwords each time"
    # The users' AMQP URLs are made from this one: the host the services reach, no credentials of its own.
    url = urlsplit(_environment(_service("broker-setup"))["RUJUKAN_AMQP_URL"])
    assert (url.hostname, url.username) == ("rabbitmq", None)
    assert (_service("broker-setup").get("depends_on") or {}).get("rabbitmq", {}).get("condition") == "service_healthy"
    assert _service("broker-setup").get("restart") == "no"


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_reads_its_broker_user_from_the_file_broker_setup_writes(name: str) -> None:
    written = PurePosixPath(str(_broker_setup_command().secrets))
    [(volume_dir, (volume, _))] = [
        (PurePosixPath(target), mount)
        for target, mount in _mounts(_service("broker-setup")).items()
        if written.is_relative_to(target)
    ]
    service = _service(name)
    env = _environment(service)
    read = PurePosixPath(env.get("RUJUKAN_BROKER_SECRETS_FILE", ""))
    [(mount_dir, (_, read_only))] = [
        (PurePosixPath(target), mount) for target, mount in _mounts(service).items() if mount[0] == volume
    ]

    assert read == mount_dir / written.relative_to(volume_dir), f"{name} reads {read}, broker-setup writes {written}"
    assert read_only, f"{name} could rewrite every broker user's URL"
    assert volume in (_compose().get("volumes") or {})
    assert "RUJUKAN_AMQP_URL" not in env, f"{name}: RUJUKAN_AMQP_URL and the secrets file together are refused"
    assert (service.get("depends_on") or {}).get("broker-setup", {}).get("condition") == (
        "service_completed_successfully"
    )


def test_the_broker_admin_password_reaches_only_rabbitmq_and_broker_setup() -> None:
    broker_env = _environment(_service("rabbitmq"))
    assert broker_env.get("RABBITMQ_DEFAULT_USER") not in (None, "guest"), "otherwise the broker creates guest/guest"
    for name, service in (_compose().get("services") or {}).items():
        if name in ("rabbitmq", "broker-setup"):
            continue
        text = yaml.safe_dump({"environment": service.get("environment"), "command": service.get("command")})
        assert "RABBITMQ_PASSWORD" not in text, name
        assert _environment(service).get("RABBITMQ_DEFAULT_USER", "x") != "guest", name


def test_compose_refuses_to_start_without_its_secrets() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    uses = [match for match in _INTERPOLATION.finditer(text) if match["name"] in SECRET_VARIABLES]
    assert {match["name"] for match in uses} == set(SECRET_VARIABLES)
    # A default (":-") would let a shared, published password or key slip into a deployment.
    lenient = sorted({match["name"] for match in uses if match["op"] != ":?"})
    assert not lenient, f"secrets without the required-variable syntax ${{NAME:?message}}: {lenient}"


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("intake", "RUJUKAN_INTAKE_DATABASE_URL"),
        ("referral", "RUJUKAN_DATABASE_URL"),
        ("notifier", "RUJUKAN_NOTIFIER_DATABASE_URL"),
    ],
)
def test_database_services_use_the_compose_postgres(name: str, variable: str) -> None:
    postgres = _environment(_service("postgres"))
    url = urlsplit(_interpolate(_environment(_service(name)).get(variable, "")))
    assert url.scheme == "postgresql+asyncpg", f"{name}: {variable} must use the asyncpg driver"
    assert url.hostname == "postgres"
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == _interpolate(postgres["POSTGRES_PASSWORD"])
    assert url.path.lstrip("/") == postgres.get("POSTGRES_DB", postgres["POSTGRES_USER"])


@pytest.mark.parametrize("name", SERVICES)
def test_services_start_only_after_their_dependencies_are_healthy(name: str) -> None:
    needed = {"rabbitmq", "postgres"} if name in DATABASE_SERVICES else {"rabbitmq"}
    depends_on = _service(name).get("depends_on") or {}
    assert isinstance(depends_on, dict), f"{name}: depends_on needs the long form to wait for health"
    for dependency in needed:
        assert (depends_on.get(dependency) or {}).get("condition") == "service_healthy", f"{name} -> {dependency}"
        assert _service(dependency).get("healthcheck"), f"{dependency} has no healthcheck to wait for"


_DURATION = re.compile(r"(?=\d)(?:(?P<minutes>\d+)m)?(?:(?P<seconds>\d+)s)?")


@pytest.mark.parametrize("name", SERVICES)
def test_compose_waits_for_a_stopping_service_to_finish_its_requests_and_messages(name: str) -> None:
    # Docker's default stop_grace_period is 10 s, then SIGKILL: a message in flight would be redelivered and a
    # request cut off, though the service would have finished both.
    match = _DURATION.fullmatch(str(_service(name).get("stop_grace_period", "")))
    assert match is not None, f"{name}: stop_grace_period must be set, e.g. 30s"
    seconds = int(match["minutes"] or 0) * 60 + int(match["seconds"] or 0)
    assert seconds > HTTP_GRACE_SECONDS + CONSUMER_GRACE_SECONDS, name


def test_dockerfile_entrypoint_is_the_rujukan_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    entrypoint = _dockerfile_exec_form("ENTRYPOINT")
    assert len(entrypoint) == 1, f"ENTRYPOINT {entrypoint} should be the console script alone"
    assert entrypoint[0] in scripts, f"ENTRYPOINT {entrypoint[0]!r} is not in [project.scripts] {sorted(scripts)}"
    module, _, attribute = scripts[entrypoint[0]].partition(":")
    assert callable(getattr(import_module(module), attribute))


def test_image_runs_as_a_non_root_user() -> None:
    users = [arguments for keyword, arguments in _dockerfile_final_stage() if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":", 1)[0] not in ("root", "0")
