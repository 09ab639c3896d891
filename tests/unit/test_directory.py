from __future__ import annotations

from pathlib import Path

import pytest

from shared.directory import Directory, load_directory
from shared.errors import ConfigurationError

DIRECTORY_FILE = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"

KALBAR_REGENCIES = {
    "61.01": "Sambas",
    "61.02": "Mempawah",
    "61.03": "Sanggau",
    "61.04": "Ketapang",
    "61.05": "Sintang",
    "61.06": "Kapuas Hulu",
    "61.07": "Bengkayang",
    "61.08": "Landak",
    "61.09": "Sekadau",
    "61.10": "Melawi",
    "61.11": "Kayong Utara",
    "61.12": "Kubu Raya",
    "61.71": "Kota Pontianak",
    "61.72": "Kota Singkawang",
}
AGENCY_IDS = [
    "polda-kalbar",
    "polres-bengkayang",
    "polres-sambas",
    "polresta-pontianak",
    "dinsos-kalbar",
    "dinsos-bengkayang",
    "dinsos-sambas",
    "uptd-ppa-kalbar",
    "bp3mi-kalbar",
]


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(DIRECTORY_FILE)


def a_broken_copy(tmp_path: Path, agency_id: str, key: str, value: str) -> tuple[Path, int]:
    """The shipped file with one key of one agency changed; returns the copy and that key's line number."""
    lines = DIRECTORY_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index(f"  - id: {agency_id}\n")
    index = next(i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith(f"{key}:"))
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = f"{indent}{key}: {value}\n"
    path = tmp_path / "broken.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path, index + 1


def test_shipped_directory_knows_all_14_regencies_of_kalimantan_barat(directory: Directory) -> None:
    assert dict(directory.province.regencies) == KALBAR_REGENCIES


@pytest.mark.parametrize(("code", "name"), [("61.07", "Bengkayang"), ("61.71", "Kota Pontianak")])
def test_regency_name_is_found_by_its_code(directory: Directory, code: str, name: str) -> None:
    assert directory.regency_name(code) == name


def test_regency_outside_the_province_has_no_name(directory: Directory) -> None:
    assert directory.regency_name("63.71") is None


def test_shipped_directory_lists_the_nine_agencies(directory: Directory) -> None:
    assert sorted(agency.id for agency in directory.agencies) == sorted(AGENCY_IDS)


@pytest.mark.parametrize("agency_id", AGENCY_IDS)
def test_demo_token_resolves_to_its_agency(directory: Directory, agency_id: str) -> None:
    found = directory.token_holder(f"dev-{agency_id}")

    assert found is not None
    assert found[0].id == agency_id


@pytest.mark.parametrize("token", ["dev-polda-jabar", "", "polda-kalbar", "DEV-POLDA-KALBAR", "dev-polda-kalbar "])
def test_unknown_token_resolves_to_no_agency(directory: Directory, token: str) -> None:
    assert directory.token_holder(token) is None


def test_agency_with_an_unknown_kind_is_refused_naming_file_line_agency_and_field(
    tmp_path: Path, directory: Directory
) -> None:
    path, line = a_broken_copy(tmp_path, "dinsos-sambas", "kind", "fire_brigade")
    position = [agency.id for agency in directory.agencies].index("dinsos-sambas")

    with pytest.raises(ConfigurationError) as excinfo:
        load_directory(path)

    message = str(excinfo.value)
    assert f"{path}:{line}:" in message
    assert f"agencies.{position}.kind" in message
    assert "'dinsos-sambas'" in message


def test_an_agency_named_like_a_service_is_refused_since_they_would_share_a_broker_user(tmp_path: Path) -> None:
    text = DIRECTORY_FILE.read_text(encoding="utf-8").replace("  - id: dinsos-sambas\n", "  - id: notifier\n")
    path = tmp_path / "clash.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigurationError, match="agency id 'notifier' is the name of a service"):
        load_directory(path)


def test_malformed_webhook_secret_is_refused_naming_file_line_agency_and_field_but_not_the_secret(
    tmp_path: Path, directory: Directory
) -> None:
    path, line = a_broken_copy(tmp_path, "bp3mi-kalbar", "secret", "hunter2")
    position = [agency.id for agency in directory.agencies].index("bp3mi-kalbar")

    with pytest.raises(ConfigurationError) as excinfo:
        load_directory(path)

    message = str(excinfo.value)
    assert f"{path}:{line}:" in message
    assert f"agencies.{position}.webhook.secret" in message
    assert "'bp3mi-kalbar'" in message
    assert "hunter2" not in message


def test_directory_that_is_not_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("province: [unclosed\n", encoding="utf-8")

    with pytest.raises(ConfigurationError, match="not valid YAML") as excinfo:
        load_directory(path)

    assert str(path) in str(excinfo.value)


def test_missing_directory_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigurationError) as excinfo:
        load_directory(path)

    assert str(path) in str(excinfo.value)
