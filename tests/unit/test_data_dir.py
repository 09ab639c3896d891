"""The demo keeps what it writes in its data directory: its keys and its SQLite ledgers together."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings


def test_another_data_directory_holds_the_ledgers_as_well_as_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: RUJUKAN_DATA_DIR moved the demo's keys but not its ledger, so a second demo run mixed its
    cases, sealed under a new key, into the first run's ledger."""
    monkeypatch.setenv("RUJUKAN_DATA_DIR", str(tmp_path))

    settings = Settings()

    assert (settings.database_url, settings.intake_database_url, settings.notifier_database_url) == (
        f"sqlite+aiosqlite:///{tmp_path}/rujukan.db",
        f"sqlite+aiosqlite:///{tmp_path}/intake.db",
        f"sqlite+aiosqlite:///{tmp_path}/notifier.db",
    )


def test_a_database_given_its_own_url_stays_there_whatever_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUJUKAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RUJUKAN_DATABASE_URL", "postgresql+asyncpg://ledger.internal/rujukan")

    assert Settings().database_url == "postgresql+asyncpg://ledger.internal/rujukan"


def test_by_default_everything_is_in_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("RUJUKAN_DATA_DIR", "RUJUKAN_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)

    assert Settings().database_url == "sqlite+aiosqlite:///var/rujukan.db"
