from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.referral.ops_sessions import SESSION_MINUTES, OpsSessions, SignInRefusedError
from shared.directory import Directory, load_directory

CONFIG = Path(__file__).resolve().parents[2] / "config" / "kalbar.yaml"
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
OPERATOR_TOKEN = "dev-ops-rujukan"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(CONFIG)


@pytest.fixture
def sessions() -> OpsSessions:
    return OpsSessions(os.urandom(32))


def test_an_operator_token_opens_a_session_that_names_the_operator(sessions: OpsSessions, directory: Directory) -> None:
    cookie = sessions.encode(sessions.sign_in(directory, OPERATOR_TOKEN, NOW))

    signed_in = sessions.verify(cookie, directory, NOW + timedelta(minutes=SESSION_MINUTES - 1))

    assert signed_in is not None
    assert signed_in.operator.id == "ops-rujukan"
    assert OPERATOR_TOKEN not in cookie


def test_an_agency_token_is_refused_as_forbidden_and_an_unknown_one_as_unauthenticated(
    sessions: OpsSessions, directory: Directory
) -> None:
    with pytest.raises(SignInRefusedError) as agency:
        sessions.sign_in(directory, "dev-dinsos-bengkayang", NOW)
    with pytest.raises(SignInRefusedError) as unknown:
        sessions.sign_in(directory, "dev-nobody", NOW)

    assert (agency.value.status_code, unknown.value.status_code) == (403, 401)


def test_a_session_ends_after_its_minutes_and_a_renewal_extends_it(sessions: OpsSessions, directory: Directory) -> None:
    session = sessions.sign_in(directory, OPERATOR_TOKEN, NOW)
    later = NOW + timedelta(minutes=SESSION_MINUTES - 5)

    renewed = sessions.encode(sessions.renewed(session, later))

    assert sessions.verify(sessions.encode(session), directory, NOW + timedelta(minutes=SESSION_MINUTES)) is None
    assert sessions.verify(renewed, directory, NOW + timedelta(minutes=SESSION_MINUTES)) is not None


def test_a_forged_or_foreign_cookie_is_no_session(sessions: OpsSessions, directory: Directory) -> None:
    cookie = sessions.encode(sessions.sign_in(directory, OPERATOR_TOKEN, NOW))
    body, _, signature = cookie.partition(".")
    other_key = OpsSessions(os.urandom(32)).encode(sessions.sign_in(directory, OPERATOR_TOKEN, NOW))

    for forged in (f"{body}x.{signature}", f"{body}.{signature[:-2]}", other_key, "", "é.é", "no-dot"):
        assert sessions.verify(forged, directory, NOW) is None


def test_taking_the_token_out_of_the_directory_ends_its_sessions(sessions: OpsSessions, directory: Directory) -> None:
    cookie = sessions.encode(sessions.sign_in(directory, OPERATOR_TOKEN, NOW))
    [operator] = directory.operators
    rotated = operator.model_copy(
        update={"api_tokens": (operator.api_tokens[0].model_copy(update={"sha256": "0" * 64}),)}
    )

    without = directory.model_copy(update={"operators": (rotated,)})

    assert sessions.verify(cookie, directory, NOW) is not None
    assert sessions.verify(cookie, without, NOW) is None


def test_the_csrf_token_must_match_the_sessions_own(sessions: OpsSessions, directory: Directory) -> None:
    session = sessions.sign_in(directory, OPERATOR_TOKEN, NOW)
    other = sessions.sign_in(directory, OPERATOR_TOKEN, NOW)

    assert sessions.csrf_matches(session, session.csrf)
    assert not sessions.csrf_matches(session, other.csrf)
    assert not sessions.csrf_matches(session, None)
    assert not sessions.csrf_matches(session, "")
