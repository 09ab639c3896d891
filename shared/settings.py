"""Settings read once from the environment (``RUJUKAN_*``), typed and frozen."""

from __future__ import annotations

import json
import re
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AmqpDsn, BeforeValidator, Field, TypeAdapter, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``"30s"`` -> 30.0; ``"2m"`` -> 120.0; used for retry schedules written by people."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 500ms, 30s, 2m or 1h")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _split_schedule(value: object) -> object:
    if isinstance(value, str):
        return tuple(parse_duration(part) for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Everything a service needs from its environment; nothing else reads ``os.environ``."""

    model_config = SettingsConfigDict(env_prefix="RUJUKAN_", frozen=True)

    environment: Literal["demo", "production"] = "demo"
    amqp_url: AmqpDsn = AmqpDsn("amqp://guest:guest@127.0.0.1:5672/")
    # TLS to the broker (an ``amqps://`` URL): the CA that signed the broker's certificate, and this service's
    # own certificate and key when the broker asks for one. Unset, the system's trusted CAs are used.
    amqp_ca_file: Path | None = None
    amqp_cert_file: Path | None = None
    amqp_key_file: Path | None = None

    # Agency messages must carry ``user_id`` = the agency's broker user (``rujukan broker setup`` deployments).
    # False only for the demo on guest, where every agency shares one broker user and nothing can be proven.
    require_user_id: bool = False
    # Broker users are named ``<prefix><agency or service id>``; users are global to a RabbitMQ node.
    broker_user_prefix: str = "rujukan-"
    # The RabbitMQ management API the ops console reads queue figures from (credentials from the AMQP URL);
    # unset, the broker's host on port 15672 (15671 for amqps). Unreachable, it falls back to passive declares.
    management_url: str | None = None
    # Where `rujukan ops` reaches the referral service's ops API, and the operate token it presents.
    ops_url: str = "http://127.0.0.1:8002"
    ops_token: str | None = None
    # The secrets file ``rujukan broker setup`` wrote: each service then logs in as its own user
    # (``users.<service>.amqp_url``) with the deployment's settings (its ``environment``). See ``for_service``.
    broker_secrets_file: Path | None = None

    @model_validator(mode="after")
    def _one_source_of_broker_credentials(self) -> Settings:
        if self.broker_secrets_file is not None and "amqp_url" in self.model_fields_set:
            raise ValueError(
                "RUJUKAN_AMQP_URL and RUJUKAN_BROKER_SECRETS_FILE are both set: each service takes its own AMQP URL "
                "from the secrets file, so unset RUJUKAN_AMQP_URL"
            )
        return self

    def for_service(self, service: str) -> Settings:
        """These settings as ``service`` runs with them: with a broker secrets file, its own AMQP URL and the
        deployment's RUJUKAN_REQUIRE_USER_ID and RUJUKAN_BROKER_USER_PREFIX come from that file."""
        if self.broker_secrets_file is None:
            return self
        path = self.broker_secrets_file
        try:
            secrets = json.loads(path.read_text())
            url = AmqpDsn(secrets["users"][service]["amqp_url"])
            environment: dict[str, str] = secrets.get("environment", {})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Never the exception's text: a half-parsed secrets file may echo a password.
            raise ConfigurationError(
                f"RUJUKAN_BROKER_SECRETS_FILE {path}: no AMQP URL for the {service} service in it "
                f"({type(exc).__name__}); run `rujukan broker setup`"
            ) from None
        update: dict[str, object] = {"amqp_url": url}
        for variable, value in environment.items():
            field = variable.removeprefix("RUJUKAN_").lower()
            if field not in type(self).model_fields:
                raise ConfigurationError(
                    f"{path}: {variable} is not a setting; was it written by `rujukan broker setup`?"
                )
            wanted = TypeAdapter(type(getattr(self, field))).validate_python(value)
            if field in self.model_fields_set and getattr(self, field) != wanted:
                raise ConfigurationError(f"{variable} contradicts {path}, which says {value!r}: unset it")
            update[field] = wanted
        resolved = self.model_copy(update=update)
        try:
            resolved._check_tls()
        except ValueError as exc:
            raise ConfigurationError(f"{path}: {exc}") from None
        return resolved

    @model_validator(mode="after")
    def _tls_files_need_amqps(self) -> Settings:
        self._check_tls()
        return self

    def _check_tls(self) -> None:
        # Certificates next to a plain amqp:// URL would be ignored, and the connection silently unencrypted.
        tls_files = (self.amqp_ca_file, self.amqp_cert_file, self.amqp_key_file)
        if any(tls_files) and self.amqp_url.scheme != "amqps":
            raise ValueError("RUJUKAN_AMQP_CA_FILE / _CERT_FILE / _KEY_FILE need an amqps:// RUJUKAN_AMQP_URL")

    database_url: str = "sqlite+aiosqlite:///var/rujukan.db"
    # Intake's registry of accepted reports; its own SQLite file by default so intake and referral never
    # wait on each other's write lock (point both at PostgreSQL in a deployment).
    intake_database_url: str = "sqlite+aiosqlite:///var/intake.db"
    # The demo's directory, whose tokens and PINs the README publishes: production refuses to run on it.
    config: Path = Path("config/kalbar.yaml")
    data_dir: Path = Path("var")
    # Base64 of a 32-byte AES key; without it the demo makes one in data_dir (production refuses).
    identity_key: str | None = None
    identity_key_id: str = "k1"
    # After a rotation, the keys older boxes were sealed with: "id:base64,id:base64" (opened, never sealed with).
    identity_retired_keys: str | None = None
    # Keys the audit trail's hash chain (HMAC-SHA256, base64 of 32 bytes), kept apart from the database so that
    # write access to the ledger cannot rewrite the chain; without it the demo makes one in data_dir.
    audit_key: str | None = None
    audit_key_id: str = Field(default="a1", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    # After a rotation, the keys older entries were chained with: "id:base64,id:base64" (verified, never written).
    audit_retired_keys: str | None = None

    http_host: str = "127.0.0.1"
    intake_port: int = 8001
    referral_port: int = 8002
    notifier_port: int = 8003
    # Where duty officers and agency systems reach the referral API (the link in a notification).
    public_referral_url: str = "http://127.0.0.1:8002"

    prefetch: int = Field(default=32, ge=1, le=1000)
    publish_timeout_seconds: float = 10.0
    max_request_bytes: int = 1_000_000
    # Delay steps of the notifier's wait queues, after the in-process retries are spent.
    retry_schedule: Annotated[tuple[float, ...], NoDecode, BeforeValidator(_split_schedule)] = (
        30.0,
        120.0,
        600.0,
        3600.0,
        21600.0,
    )
    # Short: a message waiting on one dead endpoint holds a prefetch slot every other agency needs.
    webhook_timeout_seconds: float = 5.0
    webhook_attempts: int = Field(default=3, ge=1)
    # Transient failures in a row after which an endpoint is left alone for a while (circuit breaker).
    webhook_circuit_failures: int = Field(default=5, ge=1)
    webhook_circuit_seconds: float = 30.0
    outbox_poll_seconds: float = 1.0
    # How long the notifier's claim on a notification it sends lasts; renewed every third of it until the send
    # and what follows it are recorded, so a notifier killed mid-send holds its notifications this long at most.
    notification_claim_seconds: float = Field(default=15.0, gt=0)

    @field_validator(
        "identity_key", "smtp_username", "smtp_password", "sms_gateway_token", "inbound_gateway_token", "link_key",
        "audit_key", "audit_retired_keys", "identity_retired_keys", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes an unset optional variable as "", which must not become an empty password or token.
        return None if value == "" else value

    # The notifier's record of every notification (id, recipient, channel, attempts, history).
    notifier_database_url: str = "sqlite+aiosqlite:///var/notifier.db"
    # How often the referral service looks for passed deadlines (a due escalation waits at most this long).
    deadline_sweep_seconds: float = Field(default=5.0, gt=0)
    # How often the referral service erases the identity of cases closed longer than the directory's retention.
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)

    # Email over SMTP; the demo points at its own local SMTP sink.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_sender: str = "Rujukan TPPO <rujukan@localhost>"

    @field_validator("smtp_sender")
    @classmethod
    def _sender_address_is_ascii(cls, value: str) -> str:
        # A relay without SMTPUTF8 refuses every mail from an address that is not: the notifier would take that
        # for each recipient's fault. The display name may be any text (it is encoded in the header).
        if not parseaddr(value)[1].isascii():
            raise ValueError("the sender's address must be ASCII (its display name may be any text)")
        return value

    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    # The SMS/WhatsApp gateway's HTTP API (outbound), and the token it presents on inbound replies.
    sms_gateway_url: str = "http://127.0.0.1:8099/gateway/messages"
    sms_gateway_token: str | None = None
    inbound_gateway_token: str | None = None

    # Signs one-click links and officer-page sessions (base64 of 32 bytes); the demo makes one in data_dir.
    link_key: str | None = None
    link_ttl_hours: float = Field(default=72.0, gt=0)
    pin_attempts: int = Field(default=5, ge=1)
    pin_lockout_minutes: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"
