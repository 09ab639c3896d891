"""A replayed message is checked against where it first came from; an agency cannot claim another origin."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from aio_pika import IncomingMessage

from shared.consuming import ORIGINAL_ROUTING_KEY_HEADER, ORIGINAL_USER_ID_HEADER, Origin, origin

ORIGINAL = {ORIGINAL_ROUTING_KEY_HEADER: "referral.dinsos-bengkayang.started", ORIGINAL_USER_ID_HEADER: "dinsos"}


def arrived(exchange: str, routing_key: str, user_id: str | None, headers: dict[str, Any]) -> IncomingMessage:
    return cast(
        "IncomingMessage", SimpleNamespace(exchange=exchange, routing_key=routing_key, user_id=user_id, headers=headers)
    )


def test_a_replay_through_the_default_exchange_keeps_its_first_routing_key_and_sender() -> None:
    replay = arrived("", "referral.replies", "referral-service", ORIGINAL)

    assert origin(replay) == Origin("referral.dinsos-bengkayang.started", "dinsos")


def test_origin_headers_on_a_message_published_to_a_topic_exchange_are_the_senders_own_word() -> None:
    forged = arrived("rujukan.replies", "referral.bp3mi-kalbar.started", "bp3mi", ORIGINAL)

    assert origin(forged) == Origin("referral.bp3mi-kalbar.started", "bp3mi")


def test_a_message_without_origin_headers_speaks_for_itself() -> None:
    retried = arrived("", "referral.replies", None, {})

    assert origin(retried) == Origin("referral.replies", None)
