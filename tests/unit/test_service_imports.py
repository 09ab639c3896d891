"""A service's process holds its own code, not the other services': every module loaded costs resident memory
for the process's whole life (importing all three made each service 10-24 MB larger)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system import CONFIG, ROOT

# Not through tests.system: its test sinks would load an HTTP server and client into the process.
LOADED_BY_BUILDING = """
import json, sys
from pathlib import Path
from services.cli import build_services
from shared.directory import load_directory
from shared.sealing import load_sealer
from shared.settings import Settings

service, data_dir, config = sys.argv[1:]
settings = Settings(
    amqp_url="amqp://guest:guest@127.0.0.1:5672/unused", data_dir=data_dir, inbound_gateway_token="t",
    database_url=f"sqlite+aiosqlite:///{data_dir}/rujukan.db",
)
build_services((service,), settings, load_directory(Path(config)), load_sealer(settings))
print(json.dumps(sorted(sys.modules)))
"""

SERVICES = ("intake", "referral", "notifier")


def loaded_by_building(service: str, data_dir: Path) -> list[str]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", LOADED_BY_BUILDING, service, str(data_dir), str(CONFIG)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    # Building a service logs its demo settings to stdout first.
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_process_loads_none_of_the_other_services(service: str, tmp_path: Path) -> None:
    loaded = loaded_by_building(service, tmp_path)

    assert [name for name in SERVICES if f"services.{name}.app" in loaded] == [service]


def test_no_service_loads_the_ledger_migrations_and_only_the_notifier_an_http_client(tmp_path: Path) -> None:
    libraries = {service: {"alembic", "aiohttp"} & set(loaded_by_building(service, tmp_path / service))
                 for service in SERVICES}  # fmt: skip

    assert libraries == {"intake": set(), "referral": set(), "notifier": {"aiohttp"}}


@pytest.mark.parametrize("service", ["intake", "notifier"])
def test_a_service_on_sqlite_loads_no_postgresql_dialect(service: str, tmp_path: Path) -> None:
    # The referral service does: its partial indexes name their PostgreSQL form, which SQLAlchemy checks on import.
    assert "sqlalchemy.dialects.postgresql" not in loaded_by_building(service, tmp_path)
