"""The AsyncAPI and OpenAPI documents committed under docs/ are the ones the code serves."""

from __future__ import annotations

import json
from pathlib import Path

from services.docs import REGENERATE, generate

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIG = ROOT / "config" / "kalbar.yaml"


def test_the_committed_asyncapi_and_openapi_documents_match_the_code() -> None:
    documents = generate(CONFIG)
    assert set(documents) == {
        Path(kind) / f"{service}.json"
        for kind in ("asyncapi", "openapi")
        for service in ("intake", "referral", "notifier")
    }
    stale = sorted(
        str(path)
        for path, content in documents.items()
        if not (DOCS / path).exists() or (DOCS / path).read_text(encoding="utf-8") != content
    )
    assert not stale, f"docs/{', docs/'.join(stale)} out of date: run `{REGENERATE}` in the repository's root"


def test_every_asyncapi_message_has_a_payload_schema_a_description_and_no_broker_credentials() -> None:
    for path, content in generate(CONFIG).items():
        if path.parts[0] != "asyncapi":
            continue
        document = json.loads(content)
        assert all("@" not in server["host"] for server in document["servers"].values()), path
        assert "guest" not in content, path
        schemas = document["components"]["schemas"]
        assert "EmptyPayload" not in schemas, f"{path}: a handler's message has no contract"
        for channel_name, channel in document["channels"].items():
            assert channel.get("description"), f"{path}: channel {channel_name} undescribed"
        for name, message in document["components"]["messages"].items():
            ref = message["payload"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in schemas, f"{path}: {name} has no payload schema"


def test_the_intake_document_names_every_report_type_a_police_system_may_publish() -> None:
    intake = json.loads(generate(CONFIG)[Path("asyncapi/intake.json")])
    (channel,) = (c for c in intake["channels"].values() if c["address"] == "intake.reports")
    assert set(channel["messages"]) == {"case.report.v1", "case.amend.v1", "case.withdraw.v1"}
    assert "`rujukan.intake` with `case.report`" in channel["description"]
    report = intake["components"]["messages"]["case.report.v1"]
    assert report["bindings"]["amqp"]["messageType"] == "case.report.v1"
    victim = intake["components"]["schemas"]["VictimReport"]
    assert victim["properties"], "the victim's fields are documented"
