"""The audit trail's keys come from settings like the identity key: the demo makes one, production needs one."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from shared.errors import ConfigurationError
from shared.sealing import load_audit_keys
from shared.settings import Settings

KEY = base64.b64encode(bytes(32)).decode()
OLD_KEY = base64.b64encode(bytes(range(32))).decode()


def test_production_refuses_to_start_without_the_audit_key(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path)

    with pytest.raises(ConfigurationError, match="RUJUKAN_AUDIT_KEY is required in production"):
        load_audit_keys(settings)
    assert not (tmp_path / "audit.key").exists()


def test_the_demo_makes_a_key_in_its_data_directory_says_so_and_keeps_using_it(tmp_path: Path) -> None:
    with capture_logs() as logs:
        first = load_audit_keys(Settings(data_dir=tmp_path))
        again = load_audit_keys(Settings(data_dir=tmp_path))

    assert [(log["event"], log["key_file"]) for log in logs] == [("demo_key_generated", str(tmp_path / "audit.key"))]
    assert list(first) == ["a1"]
    assert len(first["a1"]) == 32
    assert again == first
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600


def test_checking_a_trail_never_makes_a_demo_key_that_would_fail_every_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no audit key"):
        load_audit_keys(Settings(data_dir=tmp_path), create=False)
    assert not (tmp_path / "audit.key").exists()

    made = load_audit_keys(Settings(data_dir=tmp_path))

    assert load_audit_keys(Settings(data_dir=tmp_path), create=False) == made


def test_the_configured_key_and_the_retired_ones_are_loaded_by_id(tmp_path: Path) -> None:
    settings = Settings(
        environment="production",
        data_dir=tmp_path,
        audit_key=KEY,
        audit_key_id="a2",
        audit_retired_keys=f"a1:{OLD_KEY}",
    )

    assert load_audit_keys(settings) == {"a2": bytes(32), "a1": bytes(range(32))}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"audit_key": base64.b64encode(bytes(16)).decode()}, "must be 32 bytes"),
        ({"audit_key": "not base64!"}, "RUJUKAN_AUDIT_KEY is not base64"),
        ({"audit_key": KEY, "audit_retired_keys": f"a1:{OLD_KEY}"}, "not the current one"),
        ({"audit_key": KEY, "audit_retired_keys": OLD_KEY}, "id:base64"),
    ],
)
def test_a_malformed_audit_key_is_refused(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_audit_keys(Settings(data_dir=tmp_path, **overrides))  # type: ignore[arg-type]
