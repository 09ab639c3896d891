"""The integrators' contracts under ``docs/``: each service's AsyncAPI and OpenAPI document, generated from the
code (``rujukan docs generate``); a test regenerates them in memory and compares."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from pydantic import AmqpDsn

from services.cli import SERVICES, build_services
from shared.asyncapi import served_asyncapi
from shared.directory import load_directory
from shared.sealing import IdentitySealer
from shared.settings import Settings

REGENERATE = "rujukan docs generate"
"""The command that rewrites the documents (from the repository's root)."""

# Where the documents say the broker is: the compose service's name, never a credential.
_DOCUMENTED_BROKER = AmqpDsn("amqp://rabbitmq:5672/")
_UNUSED_KEY = base64.b64encode(bytes(32)).decode()


def generate(config: Path) -> dict[Path, str]:
    """Path under ``docs/`` -> content, for every service; the directory ``config`` names the agency queues."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch)
        # The defaults, not this machine's environment: the documents must not change with who generates them.
        settings = Settings.model_construct(
            amqp_url=_DOCUMENTED_BROKER,
            config=config,
            data_dir=data,
            database_url=f"sqlite+aiosqlite:///{data / 'rujukan.db'}",
            intake_database_url=f"sqlite+aiosqlite:///{data / 'intake.db'}",
            notifier_database_url=f"sqlite+aiosqlite:///{data / 'notifier.db'}",
            identity_key=_UNUSED_KEY,
            link_key=_UNUSED_KEY,
        )
        directory = load_directory(config)
        sealer = IdentitySealer({settings.identity_key_id: bytes(32)}, settings.identity_key_id)
        documents: dict[Path, str] = {}
        for service in build_services(SERVICES, settings, directory, sealer):
            documents[Path("asyncapi") / f"{service.name}.json"] = _dump(served_asyncapi(service.http))
            documents[Path("openapi") / f"{service.name}.json"] = _dump(service.http.openapi())
        return documents


def write(out: Path, documents: dict[Path, str]) -> list[Path]:
    """Writes the documents that differ; returns their paths."""
    changed = []
    for relative, content in documents.items():
        path = out / relative
        if path.exists() and path.read_text(encoding="utf-8") == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        changed.append(path)
    return changed


def _dump(document: Any) -> str:
    # Sorted: FastStream lists publishers in an order that changes from one run to the next.
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def generate_command(out: Path, config: Path) -> int:
    changed = write(out, generate(config))
    for path in changed:
        print(f"wrote {path}")
    print(f"{len(changed)} document(s) changed" if changed else f"the documents in {out} are current")
    return 0
