"""Turning an incoming AMQP message into a contract, and a refused one into a dead letter with its reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar, cast, overload

import pamqp.encode
import structlog
from aio_pika import IncomingMessage
from faststream import BaseMiddleware
from faststream.exceptions import RejectMessage
from faststream.rabbit.message import RabbitMessage
from pydantic import ValidationError

from shared.broker import Envelope, MessagePublisher
from shared.contracts.base import Contract
from shared.errors import MissingMessageIdError, PermanentError, UnknownContractError, field_path
from shared.settings import Settings
from shared.topology import DELIVERY_LIMIT, dead_letter_queue_name

C = TypeVar("C", bound=Contract)
D = TypeVar("D", bound=Contract)
E = TypeVar("E", bound=Contract)
F = TypeVar("F", bound=Contract)

REASON_HEADER = "x-rujukan-reason"
REPLAY_HEADER = "x-rujukan-replay"
"""``true`` on a dead letter an operator put back into its queue: a consumer that keeps its own record of a message
(the notifier's, of a notification) starts it afresh instead of taking it for a copy of one already ended."""
_MAX_REASON = 1000
log = structlog.get_logger(__name__)


class InvalidMessageError(PermanentError):
    """A message body does not satisfy its contract; the reason names fields, never their values."""

    def __init__(self, message_type: str, error: ValidationError) -> None:
        self.fields = field_errors(error)
        summary = "; ".join(f"{item['field']}: {item['message']}" for item in self.fields[:10])
        super().__init__(f"invalid {message_type}: {summary}")


class BodyTooLargeError(PermanentError):
    """An agency's message body over ``RUJUKAN_MAX_REQUEST_BYTES``: the limit an HTTP body gets 413 for holds over
    AMQP too, checked before the body is parsed and whatever it holds (whitespace keeps a padded message valid)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"body of {size} bytes is over the limit of {limit} bytes")


def refuse_oversized(msg: RabbitMessage, settings: Settings) -> None:
    if len(msg.body) > settings.max_request_bytes:
        raise BodyTooLargeError(len(msg.body), settings.max_request_bytes)


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Field paths and messages of a validation error, without the offending input (it may be identity)."""
    return [
        {"field": field_path(item["loc"], item["type"]), "message": item["msg"]}
        for item in error.errors(include_input=False, include_url=False, include_context=False)
    ]


def raw(msg: RabbitMessage) -> IncomingMessage:
    return msg.raw_message


def message_id_of(msg: RabbitMessage) -> str:
    # FastStream invents a message_id when the property is absent; the dedup key must be the sender's.
    message_id = raw(msg).message_id
    if not message_id:
        raise MissingMessageIdError
    return message_id


@overload
def decode(msg: RabbitMessage, model: type[C], /) -> C: ...


@overload
def decode(msg: RabbitMessage, first: type[C], second: type[D], /) -> C | D: ...


@overload
def decode(msg: RabbitMessage, first: type[C], second: type[D], third: type[E], /) -> C | D | E: ...


@overload
def decode(
    msg: RabbitMessage, first: type[C], second: type[D], third: type[E], fourth: type[F], /
) -> C | D | E | F: ...


@overload
def decode(msg: RabbitMessage, *models: type[C]) -> C: ...


def decode(msg: RabbitMessage, *models: type[Contract]) -> Contract:
    """The contract named by the message's ``type`` among ``models``; anything else is a permanent error."""
    message_type = raw(msg).type
    model = next((m for m in models if message_type == m.TYPE), None)
    if model is None:
        raise UnknownContractError(message_type)
    message_id_of(msg)
    try:
        return model.model_validate_json(msg.body)
    except ValidationError as exc:
        raise InvalidMessageError(model.TYPE, exc) from None


class UnverifiedSenderError(PermanentError):
    """An agency message whose ``user_id`` is not the broker user of the agency it claims to come from."""


ORIGINAL_ROUTING_KEY_HEADER = "x-rujukan-routing-key"
ORIGINAL_USER_ID_HEADER = "x-rujukan-user-id"


@dataclass(frozen=True)
class Origin:
    """How a message first reached Rujukan: the routing key it was published with and the broker-checked
    ``user_id`` of its publisher."""

    routing_key: str | None
    user_id: str | None


def origin(message: IncomingMessage) -> Origin:
    """Where a message first came from, also after a dead-letter replay.

    A replay comes back through the default exchange, under its queue's name and published by a service's own
    broker user, so it carries its origin in headers (set when it was dead-lettered). Only a message that arrived
    through the default exchange is believed: ``rujukan broker setup`` lets no agency write to it, and an agency
    header on a message published to a topic exchange is the sender's own word.
    """
    headers = message.headers or {}
    if message.exchange == "" and ORIGINAL_ROUTING_KEY_HEADER in headers:
        user_id = headers.get(ORIGINAL_USER_ID_HEADER)
        return Origin(_text(headers[ORIGINAL_ROUTING_KEY_HEADER]), _text(user_id) if user_id is not None else None)
    return Origin(message.routing_key, message.user_id)


_SHORT_STRING = 255
"""The most a routing key or a user_id can be: a header claiming a longer one is cut to it, or our dead letter,
carrying it back with a reason quoting it, could outgrow the frame the message arrived in."""


def _text(value: Any) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)
    return text[:_SHORT_STRING]


def verify_sender(msg: RabbitMessage, agency_id: str, *, settings: Settings) -> None:
    """Refuses a message that claims ``agency_id`` but was published by another broker user.

    RabbitMQ refuses a ``user_id`` other than the connection's user, so a present one proves the sender; a
    missing one proves nothing, and is accepted only where ``require_user_id`` is off (the demo on guest).
    """
    expected = f"{settings.broker_user_prefix}{agency_id}"
    user_id = origin(raw(msg)).user_id
    if user_id is None:
        if settings.require_user_id:
            raise UnverifiedSenderError(f"no user_id: a message from {agency_id} must carry user_id {expected}")
        return
    if user_id != expected:
        raise UnverifiedSenderError(f"user_id {user_id} may not speak for {agency_id} (expected {expected})")


def warn_if_senders_unverified(settings: Settings) -> None:
    """Says at start-up that agency messages without ``user_id`` are taken on trust."""
    if not settings.require_user_id:
        log.warning(
            "agency_messages_without_user_id_accepted",
            reason="RUJUKAN_REQUIRE_USER_ID is off: any broker user may speak for an agency that omits user_id; "
            "run `rujukan broker setup` and use its secrets file in a deployment",
        )


SEALED_BODY_HEADER = "x-rujukan-sealed-body"


def dead_letter_context(message_id: str | None) -> bytes:
    """Binds a sealed dead-letter body to its message: it cannot be swapped into another dead letter."""
    return f"dead-letter:{message_id or ''}".encode()


class DeadLetters:
    """Publishes a refused message, confirmed, to ``<queue>.dead`` with the reason in ``x-rujukan-reason``.

    With ``seal``, the body is sealed first: a refused case report still carries victim identity in plaintext,
    and a dead-letter queue keeps it for as long as nobody looks.
    """

    def __init__(self, publisher: MessagePublisher, *, seal: Callable[[bytes, bytes], bytes] | None = None) -> None:
        self._publisher = publisher
        self._seal = seal

    async def send(self, message: IncomingMessage, *, queue: str, reason: str) -> None:
        headers = self._headers(queue, reason)
        # A replay is checked against where the message first came from, as it was checked the first time.
        first = origin(message)
        if first.routing_key is not None:
            headers[ORIGINAL_ROUTING_KEY_HEADER] = first.routing_key
        if first.user_id is not None:
            headers[ORIGINAL_USER_ID_HEADER] = first.user_id
        body = message.body
        if self._seal is not None:
            body = self._seal(body, dead_letter_context(message.message_id))
            headers[SEALED_BODY_HEADER] = True
        await republish(self._publisher, message, queue=dead_letter_queue_name(queue), headers=headers, body=body)

    async def send_new(self, envelope: Envelope, *, queue: str, reason: str) -> None:
        """Parks a message this service made for ``queue`` but handled without sending it there: operators see and
        replay it as if it had died on that queue."""
        headers = self._headers(queue, reason)
        body = envelope.body
        if self._seal is not None:
            body = self._seal(body, dead_letter_context(envelope.message_id))
            headers[SEALED_BODY_HEADER] = True
        await self._publisher.publish(
            dataclasses.replace(envelope, exchange="", routing_key=dead_letter_queue_name(queue), body=body),
            headers=headers,
        )

    @staticmethod
    def _headers(queue: str, reason: str) -> dict[str, Any]:
        return {
            REASON_HEADER: reason[:_MAX_REASON],
            "x-rujukan-queue": queue,
            "x-rujukan-dead-at": datetime.now(UTC).isoformat(),
        }


_BROKER_HEADERS = frozenset({"x-delivery-count", "x-death", "x-first-death-exchange", "x-first-death-queue",
                             "x-first-death-reason"})  # fmt: skip


_SINGLE_PRECISION_MAX = 3.4028234663852886e38
_SIGNED_64_MIN, _SIGNED_64_MAX = -(2**63), 2**63 - 1


def encodable(value: Any) -> Any:
    """A header value as it was read, in a form pamqp can write again. Other clients send what pamqp reads but
    never writes — a long string that is not UTF-8 (read as ``bytes``), a double beyond single precision (pamqp
    writes every float as one), a timestamp past the year 9999 (read as its unsigned number) — and a message
    whose headers cannot be written can be neither retried nor dead-lettered: it would go round until the
    broker's delivery limit dropped our reason."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, float) and abs(value) > _SINGLE_PRECISION_MAX:
        return repr(value)
    if isinstance(value, int) and not _SIGNED_64_MIN <= value <= _SIGNED_64_MAX:
        # An unsigned 64-bit timestamp past datetime's range, read as its number (shared/amqp_decoding.py).
        return str(value)
    if isinstance(value, dict):
        return {key: encodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [encodable(item) for item in value]
    return value


SENDER_HEADERS_BUDGET = 64 * 1024
"""Bytes of a sender's headers a republished message keeps. A message's headers must fit in one frame (128 KiB by
default): one that arrived just under the limit would exceed it with our reason added, and the broker answers a
frame too large by closing the whole connection — every consumer of the service with it, again on each
redelivery."""
DROPPED_HEADERS_HEADER = "x-rujukan-dropped-headers"


def fitting(headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` without their largest ones until they fit ``SENDER_HEADERS_BUDGET``; the names of those left
    behind go in ``x-rujukan-dropped-headers``."""
    sizes = {key: len(pamqp.encode.field_table({key: value})) for key, value in headers.items()}
    total = sum(sizes.values())
    dropped: list[str] = []
    for key in sorted(sizes, key=lambda name: sizes[name], reverse=True):
        if total <= SENDER_HEADERS_BUDGET:
            break
        total -= sizes[key]
        dropped.append(key)
    if not dropped:
        return headers
    kept = {key: value for key, value in headers.items() if key not in dropped}
    return {**kept, DROPPED_HEADERS_HEADER: ", ".join(dropped)[:_MAX_REASON]}


async def republish(
    publisher: MessagePublisher,
    message: IncomingMessage,
    *,
    queue: str,
    headers: dict[str, Any],
    body: bytes | None = None,
) -> None:
    """The same message (body, id, type) to one queue through the default exchange, with extra headers. The
    broker's own delivery bookkeeping stays behind: a copied ``x-delivery-count`` would have a later round parked
    early by the last-delivery check."""
    kept = fitting(
        {key: encodable(value) for key, value in (message.headers or {}).items() if key not in _BROKER_HEADERS}
    )
    properties = {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "message_type": message.type,
        "content_type": message.content_type,
        "timestamp": message.timestamp,
    }
    await publisher.publish_to_queue(
        queue,
        body=message.body if body is None else body,
        properties=properties,
        headers={**kept, **headers},
    )


class DeadLetterMiddleware(BaseMiddleware):
    """Permanent errors become a dead letter with our reason, then the message is acked.

    Anything else is requeued (``RejectMessage(requeue=True)``) and so counted against the queue's
    ``x-delivery-limit``; past the limit the broker dead-letters it itself (reason ``delivery_limit``).
    """

    def __init__(self, msg: Any, /, *, context: Any, dead_letters: DeadLetters) -> None:
        super().__init__(msg, context=context)
        self._dead_letters = dead_letters

    async def after_processed(
        self,
        _exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        _exc_tb: TracebackType | None = None,
    ) -> bool | None:
        if exc_val is None or not isinstance(exc_val, Exception) or isinstance(exc_val, RejectMessage):
            return False
        message = cast("IncomingMessage", self.msg)
        queue = self.context.get_local("handler_").queue.name
        reason = _permanent_reason(exc_val, message)
        if reason is not None:
            await self._dead_letters.send(message, queue=queue, reason=reason)
            log.warning("message_dead_lettered", queue=queue, message_id=message.message_id, reason=reason)
            return True
        log.error(
            "message_failed_will_retry",
            queue=queue,
            message_id=message.message_id,
            error=type(exc_val).__name__,
            exc_info=exc_val,
        )
        raise RejectMessage(requeue=True) from exc_val


def _permanent_reason(error: Exception, message: IncomingMessage) -> str | None:
    """Why the message goes to its dead-letter queue now, or None to requeue it for another try."""
    if isinstance(error, PermanentError):
        return str(error)
    if isinstance(error, ValidationError):
        return "invalid message body"
    # Quorum queues count earlier deliveries in x-delivery-count. On the last one we dead-letter the message
    # ourselves rather than let the broker do it: our reason is kept, and a sealed body stays sealed.
    deliveries = earlier_deliveries(message) + 1
    if deliveries >= DELIVERY_LIMIT:
        return f"gave up after {deliveries} deliveries: {type(error).__name__}"
    return None


def earlier_deliveries(message: IncomingMessage) -> int:
    """How often the broker delivered the message before (quorum queues count in ``x-delivery-count``). A sender
    may put anything in that header before the first delivery; what is not a whole number counts as none, rather
    than failing the error handling itself (the message would then be rejected without our reason)."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else 0
