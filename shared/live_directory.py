"""The directory in force, and reloading it without a restart (rosters change often).

A reload replaces the directory only with a file that validates (in production, one without the demo's published
credentials); an invalid file is refused, named with its problems, and the directory in force stays. Each running
service writes a pid file into the data directory so ``rujukan directory reload`` can find it and send SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from shared.directory import Directory, demo_credentials, load_directory
from shared.errors import ConfigurationError

log = structlog.get_logger(__name__)

PID_GLOB = "rujukan-*.pid"


class LiveDirectory:
    def __init__(
        self,
        path: Path,
        directory: Directory | None = None,
        *,
        production: bool = False,
        on_reload: Callable[[Directory], object] = lambda _: None,
    ) -> None:
        """``on_reload`` sees each new directory once it is in force (e.g. to warn of roster gaps). ``production``
        refuses the demo's published credentials, at start and on every reload; the demo only warns of them."""
        self._path = path
        self._production = production
        self._current = directory or self._load()
        self._on_reload = on_reload

    def _load(self) -> Directory:
        directory = load_directory(self._path, production=self._production)
        if demo := demo_credentials(directory):
            # The demo runs on them by design; said at every start so that nobody mistakes it for a deployment.
            log.warning("directory_holds_demo_credentials", path=str(self._path), count=len(demo))
        return directory

    def __call__(self) -> Directory:
        return self._current

    def reload(self) -> bool:
        """True when the new file is in force; False (and the old directory kept) when it is invalid."""
        try:
            directory = self._load()
        except ConfigurationError as exc:
            log.error("directory_reload_refused", config=str(self._path), problems=str(exc))
            return False
        self._current = directory
        log.info("directory_reloaded", config=str(self._path), agencies=len(directory.agencies))
        self._on_reload(directory)
        return True


@contextlib.contextmanager
def pid_file(data_dir: Path, name: str) -> Iterator[Path]:
    """``rujukan-<name>.pid`` in the data directory while the process serves."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"rujukan-{name}.pid"
    path.write_text(f"{os.getpid()}\n")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def signal_running(data_dir: Path) -> list[tuple[str, int]]:
    """Sends SIGHUP to every running service with a pid file in ``data_dir``; stale pid files are removed."""
    signalled = []
    for path in sorted(data_dir.glob(PID_GLOB)):
        name = path.stem.removeprefix("rujukan-")
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            log.warning("directory_reload_not_permitted", service=name, pid=pid)
            continue
        signalled.append((name, pid))
    return signalled
