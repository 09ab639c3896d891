"""The directory in force, and reloading it without a restart (rosters change often).

A reload replaces the directory only with a file that validates; an invalid file is refused, named with its
problems, and the directory in force stays. Each running service writes a pid file into the data directory
so ``rujukan directory reload`` can find it and send SIGHUP.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from shared.directory import Directory, load_directory
from shared.errors import ConfigurationError

log = structlog.get_logger(__name__)

PID_GLOB = "rujukan-*.pid"


class LiveDirectory:
    def __init__(
        self,
        path: Path,
        directory: Directory | None = None,
        *,
        on_reload: Callable[[Directory], object] = lambda _: None,
    ) -> None:
        """``on_reload`` sees each new directory once it is in force (e.g. to warn of roster gaps)."""
        self._path = path
        self._current = directory or load_directory(path)
        self._on_reload = on_reload

    def __call__(self) -> Directory:
        return self._current

    def reload(self) -> bool:
        """True when the new file is in force; False (and the old directory kept) when it is invalid."""
        try:
            directory = load_directory(self._path)
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
