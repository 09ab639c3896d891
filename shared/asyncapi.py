"""Each service's AsyncAPI document: FastStream's, with the contracts our handlers really decode.

The handlers take the raw message and pick the contract by its AMQP ``type`` (``shared.consuming.decode``), so
FastStream sees no payload type on them; publishes go through the outbox or ``MessagePublisher``, which FastStream
never sees either. ``Sends`` are therefore registered as FastStream publishers with ``schema=`` (documentation
only: nothing publishes through them), and each subscriber's message is replaced by the contracts it accepts, one
message per AMQP ``type``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from faststream.rabbit import RabbitBroker, RabbitExchange
from faststream.specification import AsyncAPI
from pydantic.json_schema import models_json_schema

from shared.contracts.base import Contract
from shared.topology import Topology

AsyncAPIDocument = dict[str, Any]

_AMQP_BINDING_VERSION = "0.3.0"


@dataclass(frozen=True)
class Send:
    """A message a service publishes: where to, and with which contracts (one per AMQP ``type``)."""

    exchange: RabbitExchange | str
    routing_key: str
    contracts: tuple[type[Contract], ...]
    description: str


def register_sends(broker: RabbitBroker, sends: Sequence[Send]) -> None:
    for send in sends:
        types = ", ".join(f"`{contract.TYPE}`" for contract in send.contracts)
        schema: Any = send.contracts[0] if len(send.contracts) == 1 else _union(send.contracts)
        # Through the default exchange the routing key is the queue's name.
        target: dict[str, Any] = (
            {"queue": send.routing_key}
            if send.exchange == ""
            else {"exchange": send.exchange, "routing_key": send.routing_key}
        )
        broker.publisher(
            **target,
            title=f"{_exchange_name(send.exchange)}:{send.routing_key}",
            description=f"{send.description} AMQP `type`: {types}.",
            schema=schema,
        )


def asyncapi_document(
    broker: RabbitBroker,
    *,
    title: str,
    description: str,
    topology: Topology,
    receives: Mapping[str, Sequence[type[Contract]]],
) -> AsyncAPIDocument:
    """``receives``: per queue name, the contracts its handler decodes; ``topology`` says how messages reach it."""
    document: AsyncAPIDocument = (
        AsyncAPI(broker, title=title, version="1", description=description).to_specification().to_jsonable()
    )
    components = document.setdefault("components", {})
    messages: dict[str, Any] = components.setdefault("messages", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for key, channel in document.get("channels", {}).items():
        if "description" in channel:
            channel["description"] = inspect.cleandoc(channel["description"])
        contracts = receives.get(channel.get("address", ""))
        if not contracts or channel.get("bindings", {}).get("amqp", {}).get("is") != "queue":
            continue
        channel["description"] = " ".join(
            filter(None, (channel.get("description"), _routes_to(topology, channel["address"])))
        )
        for ref in channel["messages"].values():
            messages.pop(ref["$ref"].rsplit("/", 1)[-1], None)
        channel["messages"] = {c.TYPE: {"$ref": f"#/components/messages/{c.TYPE}"} for c in contracts}
        for operation in document.get("operations", {}).values():
            if operation["channel"]["$ref"] == f"#/channels/{key}":
                operation["messages"] = [{"$ref": f"#/channels/{key}/messages/{c.TYPE}"} for c in contracts]
        for contract in contracts:
            messages[contract.TYPE] = _message(contract)
        schemas.update(_schemas(contracts))
    _drop_unreferenced_schemas(document)
    return document


def serve_asyncapi(http: FastAPI, document: Callable[[], AsyncAPIDocument]) -> None:
    """``GET /asyncapi.json`` on ``http``; the document is built on first use (it needs the routers included)."""
    cached: list[AsyncAPIDocument] = []

    def built() -> AsyncAPIDocument:
        if not cached:
            cached.append(document())
        return cached[0]

    # Kept on the app like FastAPI keeps ``openapi()``, so `rujukan docs generate` reads what is served.
    http.state.asyncapi = built

    @http.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> AsyncAPIDocument:
        return built()


def served_asyncapi(http: FastAPI) -> AsyncAPIDocument:
    """The document ``serve_asyncapi`` serves on ``http``, without a request."""
    built: Callable[[], AsyncAPIDocument] = http.state.asyncapi
    return built()


def _routes_to(topology: Topology, queue: str) -> str:
    spec = next((spec for spec in topology.specs if spec.queue.name == queue), None)
    if spec is None or not spec.bindings:
        return ""
    routes = ", ".join(f"`{binding.exchange.name}` with `{binding.routing_key}`" for binding in spec.bindings)
    return f"Publish to exchange {routes} (queue `{queue}`)."


def _message(contract: type[Contract]) -> dict[str, Any]:
    doc = inspect.getdoc(contract) or contract.__name__
    return {
        "name": contract.TYPE,
        "title": contract.__name__,
        "summary": doc.split("\n\n", 1)[0].replace("\n", " "),
        "description": doc,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{contract.__name__}"},
        "correlationId": {"location": "$message.header#/correlation_id"},
        "bindings": {"amqp": {"messageType": contract.TYPE, "bindingVersion": _AMQP_BINDING_VERSION}},
    }


def _schemas(contracts: Sequence[type[Contract]]) -> dict[str, Any]:
    _, top = models_json_schema(
        [(contract, "validation") for contract in contracts], ref_template="#/components/schemas/{model}"
    )
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _drop_unreferenced_schemas(document: AsyncAPIDocument) -> None:
    # The subscribers' placeholder payload (FastStream's ``EmptyPayload``) is left over once replaced.
    schemas = document["components"]["schemas"]
    while True:
        text = json.dumps({k: v for k, v in document.items() if k != "components"}) + json.dumps(
            {"messages": document["components"]["messages"], "schemas": schemas}
        )
        unused = [name for name in schemas if f'"#/components/schemas/{name}"' not in text]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def _exchange_name(exchange: RabbitExchange | str) -> str:
    return exchange if isinstance(exchange, str) else exchange.name


def _union(contracts: Sequence[type[Contract]]) -> Any:
    union: Any = contracts[0]
    for contract in contracts[1:]:
        union = union | contract
    return union
