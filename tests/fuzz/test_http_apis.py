"""schemathesis against every HTTP API the three services document, for every role: no answer is a 5xx, every
answer is one the OpenAPI document lists for that operation, in the documented content type and schema, invalid
input is refused with a 4xx, and no victim identity sent in comes back in an answer.

The services run in this test's event loop against the real broker (a fresh vhost); hypothesis runs in a worker
thread and calls them over HTTP. The operations are read from each service's live ``/openapi.json``, so an endpoint
added later is fuzzed without touching this file."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.contracts.cases import IDENTITY_FIELDS
from tests.builders import a_case_report_body, the_sample_victims
from tests.fuzz.budget import fuzz_settings, seeded
from tests.system import System, WebhookSink, directory_for, settings_for

pytestmark = [pytest.mark.rabbit, pytest.mark.fuzz]

GATEWAY_TOKEN = "fuzz-inbound-gateway-token"
POLICE = "polres-bengkayang"
ROLES: dict[str, str | None] = {
    "police": f"dev-{POLICE}",
    "receiver": "dev-dinsos-bengkayang",
    "operator": "dev-ops-rujukan",
    "overseer": "dev-polda-kalbar",
    "gateway": GATEWAY_TOKEN,
    "anonymous": None,
}
EXAMPLES = 10
"""Per operation and role, positive and negative together."""


def identity_not_echoed(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No identity value the request carried (a victim's name, NIK, phone, …) is in the answer: error bodies name
    fields, never their values."""
    # A value the API document itself contains (an enum value, a field name: schemathesis draws them) is the
    # API's own word, not identity the request brought.
    vocabulary = json.dumps(case.operation.schema.raw_schema)
    sent = {value for value in _identity_values(case.body) if len(value) >= 6 and value not in vocabulary}
    echoed = sorted(value for value in sent if value in response.text)
    if echoed:
        raise AssertionError(f"the answer repeats identity it was sent: {echoed}")
    return None


def _identity_values(body: Any) -> Iterator[str]:
    if isinstance(body, dict):
        for key, value in body.items():
            if key in IDENTITY_FIELDS and isinstance(value, str):
                yield value
            else:
                yield from _identity_values(value)
    elif isinstance(body, list):
        for item in body:
            yield from _identity_values(item)


def invalid_body_or_path_refused(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A body or path that breaks the schema is refused with a 4xx. Query parameters nobody declared are ignored,
    as HTTP APIs do, and a header negation is undone by the caller's token, which this harness always sends."""
    if case.meta is None or not any(
        case.meta.is_negative_at(at) for at in (ParameterLocation.BODY, ParameterLocation.PATH)
    ):
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    invalid_body_or_path_refused,
    identity_not_echoed,
]


def as_caller(
    cases: st.SearchStrategy[Case], base_url: str, session: requests.Session, headers: dict[str, str], seen: set[str]
) -> None:
    @seeded
    @fuzz_settings(EXAMPLES)
    @given(case=cases)
    def run(case: Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=15)
        seen.add(f"{case.operation.label} {response.status_code}")
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def fuzz(schema: schemathesis.BaseSchema, base_url: str, known: dict[str, list[str]], seen: set[str]) -> list[str]:
    """Every operation of ``schema`` as every role, positive and negative: the failures found, one line each;
    ``seen`` gets each operation and status answered."""
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            names = re.findall(r"{(\w+)}", operation.path)
            # Half the time a path names something that exists (the seeded case and its legs), so the fuzzer
            # gets past the 404s into the moves themselves.
            fixed = [{}, *({name: value for name in names for value in [known[name][i % len(known[name])]]}
                           for i in range(3))] if names and all(n in known for n in names) else [{}]  # fmt: skip
            cases = st.one_of(
                [operation.as_strategy(mode, path_parameters=path) for mode in GenerationMode for path in fixed]
            )
            for role, token in ROLES.items():
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    as_caller(cases, base_url, session, headers, seen)
                except (Exception, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup
                    failures.append(f"{operation.label} as {role}: {exc}")
    return failures


@pytest.fixture
async def system(amqp_url: str, sink: WebhookSink, tmp_path: Path) -> AsyncIterator[System]:
    directory = directory_for(sink)
    sink.directory = directory
    settings = settings_for(amqp_url, tmp_path, inbound_gateway_token=GATEWAY_TOKEN)
    running = System(settings, directory, sink, ("intake", "referral", "notifier"))
    await running.start()
    yield running
    await running.stop()


async def seeded_case(system: System) -> dict[str, list[str]]:
    """A reported case with three legs: the ids the fuzzer may put in its paths."""
    accepted = await system.report(a_case_report_body(reporting_agency=POLICE, victims=the_sample_victims()))
    assert accepted.status_code == 202, accepted.text
    case_id = accepted.json()["case_id"]
    case = await system.case_when(case_id, lambda c: len(c["referrals"]) == 3)
    return {"case_id": [case_id], "referral_id": [leg["referral_id"] for leg in case["referrals"]]}


@pytest.mark.parametrize("service", ["intake", "referral", "notifier"])
async def test_every_documented_operation_answers_within_its_documented_contract(system: System, service: str) -> None:
    known = await seeded_case(system)
    base_url = f"http://127.0.0.1:{getattr(system.settings, f'{service}_port')}"
    async with httpx.AsyncClient() as client:
        document = (await client.get(f"{base_url}/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)

    seen: set[str] = set()
    failures = await asyncio.to_thread(fuzz, schema, base_url, known, seen)

    assert not failures, "\n\n".join(failures)
    # The fuzzer got past the door: some operation under /v1/ did what it was asked.
    assert service == "notifier" or any(re.fullmatch(r"\w+ /v1/\S+ 2\d\d", answer) for answer in seen), seen
