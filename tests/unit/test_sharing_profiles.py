"""Data-sharing profiles and the retention period, as the directory states them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from shared.directory import DEFAULT_SHARING, AgencyKind, Directory, load_directory
from shared.errors import ConfigurationError

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DIRECTORY_FILE)


def a_changed_copy(tmp_path: Path, change: dict[str, object], agency_id: str | None = None) -> Path:
    """The shipped directory with keys of one agency (or of the top level) changed."""
    raw = yaml.safe_load(DIRECTORY_FILE.read_text(encoding="utf-8"))
    target = next(a for a in raw["agencies"] if a["id"] == agency_id) if agency_id else raw
    target.update(change)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def fields_of(directory: Directory, agency_id: str) -> frozenset[str]:
    agency = directory.agency(agency_id)
    assert agency is not None
    return agency.identity_fields()


def test_each_kind_of_agency_sees_what_its_work_needs_by_default(directory: Directory) -> None:
    assert fields_of(directory, "dinsos-bengkayang") == {"full_name", "birth_date", "current_location"}
    assert fields_of(directory, "bp3mi-kalbar") == {"full_name", "passport_number"}
    assert fields_of(directory, "uptd-ppa-kalbar") == {"full_name", "phone", "current_location"}


def test_no_default_profile_shows_the_nik(directory: Directory) -> None:
    assert not any("nik" in agency.identity_fields() for agency in directory.agencies)


def test_a_police_unit_sees_no_victim_identity_through_referrals(directory: Directory) -> None:
    assert fields_of(directory, "polres-bengkayang") == frozenset()


def test_a_profile_in_the_directory_replaces_the_default_for_its_kind(tmp_path: Path) -> None:
    path = a_changed_copy(tmp_path, {"sharing": {"identity_fields": ["full_name", "nik"]}}, "bp3mi-kalbar")

    directory = load_directory(path)

    assert fields_of(directory, "bp3mi-kalbar") == {"full_name", "nik"}
    assert fields_of(directory, "dinsos-bengkayang") == {"full_name", "birth_date", "current_location"}


def test_a_profile_naming_a_field_that_is_not_identity_is_refused_with_its_place(tmp_path: Path) -> None:
    path = a_changed_copy(tmp_path, {"sharing": {"identity_fields": ["full_name", "mother_name"]}}, "bp3mi-kalbar")

    with pytest.raises(ConfigurationError) as error:
        load_directory(path)

    assert "sharing.identity_fields.1" in str(error.value)
    assert "'mother_name' is not a victim identity field" in str(error.value)
    assert "bp3mi-kalbar" in str(error.value)


def test_an_empty_profile_shows_no_identity_at_all(tmp_path: Path) -> None:
    path = a_changed_copy(tmp_path, {"sharing": {"identity_fields": []}}, "dinsos-bengkayang")

    assert fields_of(load_directory(path), "dinsos-bengkayang") == frozenset()


def test_the_shipped_directory_keeps_identity_a_year_after_a_case_closes(directory: Directory) -> None:
    assert directory.retention.identity_after_closed == timedelta(days=365)


@pytest.mark.parametrize(("written", "period"), [("30d", timedelta(days=30)), ("12h", timedelta(hours=12))])
def test_retention_is_written_in_days_or_shorter_units(tmp_path: Path, written: str, period: timedelta) -> None:
    path = a_changed_copy(tmp_path, {"retention": {"identity_after_closed": written}})

    assert load_directory(path).retention.identity_after_closed == period


def test_a_retention_of_nothing_is_refused(tmp_path: Path) -> None:
    path = a_changed_copy(tmp_path, {"retention": {"identity_after_closed": "0d"}})

    with pytest.raises(ConfigurationError, match=r"retention\.identity_after_closed"):
        load_directory(path)


def test_a_case_left_open_may_not_lose_its_identity_sooner_than_a_closed_one(tmp_path: Path) -> None:
    path = a_changed_copy(tmp_path, {"retention": {"identity_after_closed": "365d", "identity_after_idle": "90d"}})

    with pytest.raises(ConfigurationError, match=r"identity_after_idle must not be shorter"):
        load_directory(path)


def test_kinds_without_a_default_profile_are_only_police() -> None:
    assert set(AgencyKind) - set(DEFAULT_SHARING) == {AgencyKind.POLICE}
