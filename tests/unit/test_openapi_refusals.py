"""The OpenAPI documents list the refusals every operation can give, with the body it gives them in (found by
schemathesis: 401, 429 and the parser's 400 were undocumented, and 422 was documented as FastAPI's own body)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.cli import build_services
from shared.directory import load_directory
from shared.sealing import load_sealer
from tests.system import CONFIG, settings_for


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    settings = settings_for("amqp://guest:guest@127.0.0.1:5672/unused", data_dir, inbound_gateway_token="t")
    services = build_services(
        ("intake", "referral", "notifier"), settings, load_directory(CONFIG), load_sealer(settings)
    )
    return {service.name: service.http.openapi() for service in services}


def operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{method.upper()} {path}", op) for path, item in document["paths"].items() for method, op in item.items()]


def test_every_operation_behind_an_agency_token_documents_401_403_and_429_with_retry_after(
    documents: dict[str, dict[str, Any]],
) -> None:
    secured = [(label, op) for doc in documents.values() for label, op in operations(doc) if "security" in op]

    assert len(secured) > 10
    for label, op in secured:
        expected = {"401", "404"} if label == "POST /v1/inbound/sms" else {"401", "403", "429"}
        assert expected <= set(op["responses"]), label
    assert all("Retry-After" in op["responses"]["429"]["headers"] for _, op in secured if "429" in op["responses"])


def test_every_operation_taking_a_body_documents_400_413_and_422_as_a_problem(
    documents: dict[str, dict[str, Any]],
) -> None:
    with_body = [(label, op) for doc in documents.values() for label, op in operations(doc) if "requestBody" in op]

    assert with_body
    for label, op in with_body:
        for code in ("400", "413", "422"):
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (label, code)


def test_no_refusal_is_documented_without_a_body_or_as_fastapi_s_validation_error(
    documents: dict[str, dict[str, Any]],
) -> None:
    for name, document in documents.items():
        assert "HTTPValidationError" not in str(document), name
        for label, op in operations(document):
            for code, answer in op["responses"].items():
                if code[0] in "45":
                    assert answer.get("content"), (label, code)


def test_readiness_documents_the_503_it_answers_when_a_dependency_is_down(
    documents: dict[str, dict[str, Any]],
) -> None:
    for document in documents.values():
        assert {"200", "503"} <= set(document["paths"]["/readyz"]["get"]["responses"])
