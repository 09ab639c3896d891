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
from shared.directory import DEMO_PIN_HASH, hash_pin
from shared.errors import ConfigurationError
from shared.live_directory import LiveDirectory, pid_file, signal_running
from shared.tokens import issue_token, token_sha256
from tests.system import CONFIG


def _agency(document: dict[str, Any], agency_id: str) -> dict[str, Any]:
    return next(a for a in document["agencies"] if a["id"] == agency_id)


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def _without_demo_credentials(document: dict[str, Any]) -> dict[str, Any]:
    """The shipped directory as a deployment would write it: its own tokens and PINs."""
    own_pin = hash_pin("90817263")  # one hash for every officer: PBKDF2 is slow on purpose
    for holder in (*document["agencies"], *document.get("operators", [])):
        for entry in holder["api_tokens"]:
            entry["sha256"] = issue_token(("report",))[1].sha256
        for officer in (holder.get("roster") or {}).get("officers", []):
            officer["pin_hash"] = own_pin
    return document


def test_production_refuses_to_start_on_the_demo_directory_naming_what_to_change() -> None:
    with pytest.raises(ConfigurationError) as refused:
        LiveDirectory(CONFIG, production=True)

    message = str(refused.value)
    assert "RUJUKAN_ENVIRONMENT=production" in message
    assert "polda-kalbar (API token dev-polda-kalbar)" in message
    assert "ops-rujukan (API token dev-ops-rujukan)" in message
    assert "dinsos-kalbar/piket-pagi (PIN 1234)" in message
    assert "rujukan token" in message


def test_production_starts_on_a_directory_with_its_own_credentials(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    _write(path, _without_demo_credentials(yaml.safe_load(CONFIG.read_text())))

    live = LiveDirectory(path, production=True)

    assert live().agency("polda-kalbar") is not None


@pytest.mark.parametrize("demo_credential", ["token", "pin"])
def test_a_reload_in_production_refuses_a_demo_credential_and_keeps_the_directory_in_force(
    tmp_path: Path, demo_credential: str
) -> None:
    path = tmp_path / "directory.yaml"
    document = _without_demo_credentials(yaml.safe_load(CONFIG.read_text()))
    _write(path, document)
    live = LiveDirectory(path, production=True)
    before = live()
    if demo_credential == "token":
        _agency(document, "dinsos-kalbar")["api_tokens"][0]["sha256"] = token_sha256("dev-dinsos-kalbar")
    else:
        _agency(document, "dinsos-kalbar")["roster"]["officers"][0]["pin_hash"] = DEMO_PIN_HASH
    _write(path, document)

    assert not live.reload()

    assert live() is before


def test_directory_check_in_production_refuses_the_demo_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUJUKAN_ENVIRONMENT", "production")
    monkeypatch.setenv("RUJUKAN_CONFIG", str(CONFIG))

    assert main(["directory", "check"]) == 2

    assert "the demo's published credentials" in capsys.readouterr().err


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
