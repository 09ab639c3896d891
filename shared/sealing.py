"""Sealing victim identity: AES-256-GCM with a named key, so identity is never plaintext on the broker's
disk and rests encrypted in the ledger (DESIGN.md, "Victim privacy")."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.contracts.cases import SealedBox
from shared.errors import ConfigurationError, PermanentError
from shared.settings import Settings

log = structlog.get_logger(__name__)


class UnsealError(PermanentError):
    """A sealed box names an unknown key or was tampered with."""


class IdentitySealer:
    def __init__(self, keys: dict[str, bytes], current_key_id: str) -> None:
        if current_key_id not in keys:
            raise ConfigurationError(f"identity key {current_key_id!r} is not configured")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current_key_id

    def seal(self, payload: dict[str, Any], *, context: bytes) -> SealedBox:
        """``context`` (e.g. the case id) is authenticated too: a box cannot be moved to another case."""
        nonce = os.urandom(12)
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        ciphertext = self._keys[self._current].encrypt(nonce, data, context)
        return SealedBox(
            key_id=self._current,
            nonce=base64.b64encode(nonce).decode(),
            ciphertext=base64.b64encode(ciphertext).decode(),
        )

    def seal_bytes(self, data: bytes, *, context: bytes) -> bytes:
        """Opaque bytes (e.g. a refused report kept in a dead-letter queue) as a sealed JSON document."""
        box = self.seal({"bytes": base64.b64encode(data).decode()}, context=context)
        return json.dumps({"sealed": box.model_dump()}).encode()

    def open_bytes(self, sealed: bytes, *, context: bytes) -> bytes:
        try:
            box = SealedBox.model_validate(json.loads(sealed)["sealed"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UnsealError("not a sealed document") from exc
        return base64.b64decode(self.open(box, context=context)["bytes"])

    def open(self, box: SealedBox, *, context: bytes) -> dict[str, Any]:
        key = self._keys.get(box.key_id)
        if key is None:
            raise UnsealError(f"sealed with unknown key {box.key_id!r}")
        try:
            data = key.decrypt(base64.b64decode(box.nonce), base64.b64decode(box.ciphertext), context)
        except (InvalidTag, ValueError) as exc:
            raise UnsealError("sealed identity failed authentication") from exc
        payload: dict[str, Any] = json.loads(data)
        return payload


def load_sealer(settings: Settings) -> IdentitySealer:
    """The configured key; the demo makes one in its data directory (and says so), production refuses."""
    if settings.identity_key:
        key = base64.b64decode(settings.identity_key)
    elif settings.environment == "production":
        raise ConfigurationError("RUJUKAN_IDENTITY_KEY is required in production (base64 of 32 random bytes)")
    else:
        key = _demo_key(settings.data_dir / "identity.key")
    current = settings.identity_key_id
    retired = _retired_keys(settings.identity_retired_keys, "RUJUKAN_IDENTITY_RETIRED_KEYS", current=current)
    keys = {current: key, **retired}
    for key_id, secret in keys.items():
        if len(secret) != 32:
            raise ConfigurationError(f"identity key {key_id!r} must be 32 bytes (AES-256), base64-encoded")
    return IdentitySealer(keys, current)


def load_link_key(settings: Settings) -> bytes:
    """The key that signs one-click links; shared by the notifier (which issues links) and referral."""
    if settings.link_key:
        key = base64.b64decode(settings.link_key)
    elif settings.environment == "production":
        raise ConfigurationError("RUJUKAN_LINK_KEY is required in production (base64 of 32 random bytes)")
    else:
        key = _demo_key(settings.data_dir / "link.key")
    if len(key) < 32:
        raise ConfigurationError("the link key must be at least 32 bytes, base64-encoded")
    return key


def load_audit_keys(settings: Settings, *, create: bool = True) -> dict[str, bytes]:
    """Every key of the audit trail's chain by id: the current one (``audit_key_id``) and the retired ones older
    entries name. The demo makes the current one in its data directory (and says so), production refuses.

    ``create=False`` is for checking a trail: a fresh demo key there would make every entry look edited."""
    demo_key_file = settings.data_dir / "audit.key"
    if settings.audit_key:
        key = _decode_key(settings.audit_key, "RUJUKAN_AUDIT_KEY")
    elif settings.environment == "production":
        raise ConfigurationError("RUJUKAN_AUDIT_KEY is required in production (base64 of 32 random bytes)")
    elif not create and not demo_key_file.exists():
        raise ConfigurationError(
            f"no audit key: RUJUKAN_AUDIT_KEY is unset and {demo_key_file} does not exist"
            " (set RUJUKAN_DATA_DIR to the services' data directory)"
        )
    else:
        key = _demo_key(demo_key_file)
    keys = {
        settings.audit_key_id: key,
        **_retired_keys(settings.audit_retired_keys, "RUJUKAN_AUDIT_RETIRED_KEYS", current=settings.audit_key_id),
    }
    for key_id, secret in keys.items():
        if len(secret) != 32:
            raise ConfigurationError(f"audit key {key_id!r} must be 32 bytes, base64-encoded")
    return keys


def _retired_keys(value: str | None, variable: str, *, current: str) -> dict[str, bytes]:
    """After a rotation, the keys older data names: ``id:base64,id:base64`` (opened or verified, never used to
    write)."""
    keys: dict[str, bytes] = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        key_id, colon, encoded = item.strip().partition(":")
        if not colon or not key_id or key_id == current or key_id in keys:
            raise ConfigurationError(f"{variable} is id:base64,id:base64 with ids unique and not the current one")
        keys[key_id] = _decode_key(encoded, f"{variable} {key_id!r}")
    return keys


def _decode_key(encoded: str, what: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ConfigurationError(f"{what} is not base64") from exc


def _demo_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(base64.b64encode(os.urandom(32)))
        try:
            # link() fails if another process got there first: every service then shares its key.
            os.link(tmp, path)
            log.warning("demo_key_generated", key_file=str(path))
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return base64.b64decode(path.read_bytes())
