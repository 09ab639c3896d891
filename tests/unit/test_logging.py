from __future__ import annotations

import json

import pytest
import structlog

from shared.logging import configure_logging


# Service processes cache their loggers; tests, which capture logs, do not.
@pytest.mark.parametrize("cache_loggers", [True, False], ids=["service process", "tests"])
def test_the_configured_pipeline_prints_json_without_victim_identity(
    capsys: pytest.CaptureFixture[str], cache_loggers: bool
) -> None:
    configure_logging("INFO", service="referral", cache_loggers=cache_loggers)
    try:
        structlog.get_logger("test").info("referral_opened", case_id="c-1", full_name="Siti Aminah", nik="6107")

        [line] = capsys.readouterr().out.strip().splitlines()
    finally:
        # Back to the real stdout: the captured stream closes when this test ends.
        with capsys.disabled():
            configure_logging("WARNING")
        structlog.contextvars.clear_contextvars()

    record = json.loads(line)
    assert record["case_id"] == "c-1"
    assert record["service"] == "referral"
    assert "Siti" not in line
    assert "6107" not in line
