from __future__ import annotations

import pytest

from services.notifier.channels import PermanentChannelError, TransientChannelError, classify_status


@pytest.mark.parametrize("status", [200, 202, 204])
def test_success_answer_is_no_error(status: int) -> None:
    assert classify_status(status) is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_timeout_throttling_and_server_errors_are_worth_retrying(status: int) -> None:
    error = classify_status(status)

    assert isinstance(error, TransientChannelError)
    assert str(status) in error.reason


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_client_errors_and_redirects_are_not_retried(status: int) -> None:
    error = classify_status(status)

    assert isinstance(error, PermanentChannelError)
    assert str(status) in error.reason
