"""Rosters change often: the directory reloads in place, and an invalid file never replaces a good one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import main
from shared.live_directory import LiveDirectory, pid_file, signal_running
from tests.system import CONFIG


def _agency(document: dict[str, Any], agency_id: str) -> dict[str, Any]:
    return next(a for a in document["agencies"] if a["id"] == agency_id)


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def test_reload_puts_the_new_roster_in_force(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    document = yaml.safe_load(CONFIG.read_text())
    _write(path, document)
    live = LiveDirectory(path)
    _agency(document, "dinsos-kalbar")["roster"]["backup"] = "piket-sore"
    _write(path, document)

    assert live.reload()

    roster = live().agency("dinsos-kalbar").roster  # type: ignore[union-attr]
    assert roster is not None
    assert roster.backup == "piket-sore"


def test_an_invalid_new_file_is_refused_and_the_old_directory_stays(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    document = yaml.safe_load(CONFIG.read_text())
    _write(path, document)
    live = LiveDirectory(path)
    before = live()
    _agency(document, "dinsos-kalbar")["roster"]["backup"] = "nobody-by-that-name"
    _write(path, document)

    assert not live.reload()

    assert live() is before


def test_reload_signals_each_running_service_and_forgets_dead_ones(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(  # a stand-in service that records the SIGHUP it receives
        [sys.executable, "-c", "import signal,sys,time; signal.signal(signal.SIGHUP, lambda *_: sys.exit(7)); "
         "print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert sleeper.stdout is not None
    assert sleeper.stdout.readline().strip() == b"ready"
    (tmp_path / "rujukan-referral.pid").write_text(f"{sleeper.pid}\n")
    (tmp_path / "rujukan-notifier.pid").write_text("999999999\n")

    signalled = signal_running(tmp_path)

    assert signalled == [("referral", sleeper.pid)]
    assert sleeper.wait(timeout=10) == 7
    assert not (tmp_path / "rujukan-notifier.pid").exists()


def test_a_serving_process_leaves_a_pid_file_only_while_it_runs(tmp_path: Path) -> None:
    with pid_file(tmp_path, "intake") as path:
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()


def test_a_reload_tells_its_listener_of_the_directory_now_in_force(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    _write(path, yaml.safe_load(CONFIG.read_text()))
    seen: list[object] = []
    live = LiveDirectory(path, on_reload=seen.append)

    assert live.reload()

    assert seen == [live()]


def test_directory_check_names_an_agency_whose_roster_leaves_hours_uncovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(CONFIG.read_text())
    for officer in _agency(document, "bp3mi-kalbar")["roster"]["officers"]:
        if officer["id"] == "piket-malam":
            officer["shifts"] = []
    _write(tmp_path / "directory.yaml", document)
    monkeypatch.setenv("RUJUKAN_CONFIG", str(tmp_path / "directory.yaml"))

    assert main(["directory", "check"]) == 0

    assert (
        "warning: bp3mi-kalbar has nobody on duty mon 23:00-tue 07:00, tue 23:00-wed 07:00" in capsys.readouterr().err
    )
