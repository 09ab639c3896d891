from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.cli import main
from shared.directory import Agency, Directory, load_directory
from shared.errors import ConfigurationError
from shared.tokens import ApiToken, FailureLimiter, Scope, find_token

CONFIG = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(CONFIG)


def a_token(token: str, *scopes: Scope, not_after: datetime | None = None) -> ApiToken:
    return ApiToken(sha256=hashlib.sha256(token.encode()).hexdigest(), scopes=scopes, not_after=not_after)


def an_agency(**overrides: Any) -> dict[str, Any]:
    agency: dict[str, Any] = {
        "id": "polres-uji",
        "name": "Polres Uji",
        "kind": "police",
        "jurisdiction": {"province": "61", "regencies": ["61.07"]},
        "api_tokens": [{"sha256": "a" * 64, "scopes": ["report"]}],
    }
    return agency | overrides


@pytest.mark.parametrize(
    ("token", "holder", "scopes"),
    [
        ("dev-polres-bengkayang", "polres-bengkayang", {Scope.REPORT}),
        ("dev-polda-kalbar", "polda-kalbar", {Scope.REPORT, Scope.OVERSEE}),
        ("dev-dinsos-bengkayang", "dinsos-bengkayang", {Scope.RECEIVE}),
        ("dev-ops-rujukan", "ops-rujukan", {Scope.OPERATE}),
    ],
)
def test_demo_token_names_its_holder_and_scopes(
    directory: Directory, token: str, holder: str, scopes: set[Scope]
) -> None:
    found = directory.token_holder(token)

    assert found is not None
    assert found[0].id == holder
    assert set(found[1].scopes) == scopes


def test_either_token_of_a_rotation_finds_its_holder() -> None:
    old, new = a_token("old", Scope.REPORT, not_after=NOW), a_token("new", Scope.REPORT)
    holders = [("polres-a", old), ("polres-a", new), ("polres-b", a_token("other", Scope.REPORT))]

    assert find_token(holders, "old") == ("polres-a", old)
    assert find_token(holders, "new") == ("polres-a", new)
    assert find_token(holders, "neither") is None


def test_a_token_works_until_its_not_after_and_not_a_moment_later() -> None:
    token = a_token("old", Scope.REPORT, not_after=NOW)

    assert token.valid_at(NOW)
    assert not token.valid_at(NOW + timedelta(microseconds=1))
    assert a_token("new", Scope.REPORT).valid_at(NOW + timedelta(days=3650))


def test_not_after_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ApiToken(sha256="a" * 64, scopes=(Scope.REPORT,), not_after=datetime(2026, 12, 1))


@pytest.mark.parametrize(
    ("kind", "scope"),
    [("police", "receive"), ("police", "operate"), ("social_services", "report"), ("child_protection", "operate")],
)
def test_a_token_with_a_scope_its_agency_kind_cannot_have_is_refused(kind: str, scope: str) -> None:
    with pytest.raises(ValidationError, match=f"cannot have scope {scope}"):
        Agency.model_validate(an_agency(kind=kind, api_tokens=[{"sha256": "a" * 64, "scopes": [scope]}]))


def test_an_agency_without_tokens_is_refused() -> None:
    with pytest.raises(ValidationError, match="api_tokens"):
        Agency.model_validate(an_agency(api_tokens=[]))


def test_a_directory_with_one_api_token_sha256_per_agency_still_loads_with_the_kinds_usual_scope() -> None:
    police = an_agency()
    del police["api_tokens"]

    agency = Agency.model_validate(police | {"api_token_sha256": "b" * 64})

    assert agency.api_tokens == (ApiToken(sha256="b" * 64, scopes=(Scope.REPORT,)),)


def test_an_operator_token_with_an_agency_scope_is_refused(tmp_path: Path) -> None:
    document = yaml.safe_load(CONFIG.read_text())
    document["operators"][0]["api_tokens"][0]["scopes"] = ["operate", "oversee"]
    path = tmp_path / "directory.yaml"
    path.write_text(yaml.safe_dump(document))

    with pytest.raises(ConfigurationError, match="operate scope only"):
        load_directory(path)


def test_one_token_for_two_holders_is_refused_naming_both(tmp_path: Path) -> None:
    document = yaml.safe_load(CONFIG.read_text())
    sambas = next(a for a in document["agencies"] if a["id"] == "polres-sambas")
    sambas["api_tokens"].append({"sha256": hashlib.sha256(b"dev-polres-bengkayang").hexdigest(), "scopes": ["report"]})
    path = tmp_path / "directory.yaml"
    path.write_text(yaml.safe_dump(document))

    with pytest.raises(ConfigurationError, match="is also polres-bengkayang's token") as excinfo:
        load_directory(path)

    assert "(agency 'polres-sambas')" in str(excinfo.value)


def test_failures_under_the_limit_leave_the_address_free() -> None:
    limiter = FailureLimiter(limit=3, window_seconds=60)
    for second in range(2):
        limiter.fail("10.0.0.1", float(second))

    assert limiter.retry_after("10.0.0.1", 2.0) is None


def test_the_limit_reached_makes_the_address_wait_until_its_oldest_failure_leaves_the_window() -> None:
    limiter = FailureLimiter(limit=3, window_seconds=60)
    for second in (0.0, 10.0, 20.0):
        limiter.fail("10.0.0.1", second)

    assert limiter.retry_after("10.0.0.1", 30.0) == pytest.approx(30.0)
    assert limiter.retry_after("10.0.0.1", 60.5) is None


def test_one_address_failing_does_not_make_another_wait() -> None:
    limiter = FailureLimiter(limit=1, window_seconds=60)
    limiter.fail("10.0.0.1", 0.0)

    assert limiter.retry_after("10.0.0.1", 1.0) is not None
    assert limiter.retry_after("10.0.0.2", 1.0) is None


def test_a_flood_from_many_addresses_keeps_a_bounded_record() -> None:
    limiter = FailureLimiter(limit=2, window_seconds=60, max_addresses=100)
    for n in range(1000):
        limiter.fail(f"10.0.{n // 256}.{n % 256}", float(n) / 100)

    assert len(limiter._failures) <= 100
    assert limiter.fail("10.0.3.231", 10.0) == 2  # the latest addresses are still counted


def test_an_issued_token_is_printed_once_with_a_directory_entry_holding_only_its_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "report", "oversee", "--label", "sistem perkara Polda"]) == 0

    lines = capsys.readouterr().out.splitlines()
    token = lines[0].removeprefix("token: ")
    [entry] = yaml.safe_load(lines[-1])
    assert ApiToken.model_validate(entry) == ApiToken(
        sha256=hashlib.sha256(token.encode()).hexdigest(),
        scopes=(Scope.REPORT, Scope.OVERSEE),
        label="sistem perkara Polda",
    )
    assert token not in lines[-1]
    assert len(token) >= 40
