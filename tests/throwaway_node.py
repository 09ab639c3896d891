"""A RabbitMQ node of a test's own (FASTSTREAM.md, "Chaos tests"): its own name, ports, data and logs under a
temporary directory, killed on the way out. The shared broker on 5672 is never touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.system import free_port

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


@contextmanager
def throwaway_node(home: Path, name: str, *, config: str = "") -> Iterator[int]:
    """Starts the node with ``config`` (rabbitmq.conf lines; a plain listener on the port by default) and yields
    its port once it has started."""
    if not RABBITMQ_SERVER.exists():
        pytest.skip("no RabbitMQ server scripts here to start a node of the test's own")
    port = free_port()
    (home / "rabbitmq.conf").write_text(config.format(port=port) or f"listeners.tcp.default = {port}\n")
    (home / "enabled_plugins").write_text("[].\n")
    environment = {
        "HOME": str(home),
        "RABBITMQ_NODENAME": f"{name}{port}@localhost",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(home / "pid"),
    }
    # Only the node's own variables are kept on disk; the rest of the environment is the caller's at each start.
    (home / "environment.json").write_text(json.dumps(environment))
    try:
        _start(home)
        yield port
    finally:
        kill_node(home)


def restart_node(home: Path) -> None:
    """Starts a node killed by ``kill_node`` again, on the same name, ports and data."""
    _start(home)


def _start(home: Path) -> None:
    environment = {**os.environ, **json.loads((home / "environment.json").read_text())}
    started_before = startups(home)
    subprocess.run([str(RABBITMQ_SERVER), "-detached"], env=environment, check=True, timeout=60)  # noqa: S603
    deadline = time.monotonic() + 60
    while startups(home) == started_before:
        assert time.monotonic() < deadline, f"the throwaway node in {home} did not start in 60 s"
        time.sleep(0.2)


def startups(home: Path) -> int:
    return sum(log.read_text().count("Server startup complete") for log in (home / "log").glob("*.log"))


def kill_node(home: Path) -> None:
    if (home / "pid").exists():
        with suppress(ProcessLookupError):
            os.kill(int((home / "pid").read_text()), signal.SIGKILL)
        (home / "pid").unlink()
