"""YAML configuration in the shape the OSO kafka-backup docs use, validated by pydantic.

``${VAR}`` is expanded from the environment; an unknown key is an error naming the key; a bad
value is an error naming the key and the problem. CLI flags override what the file says.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.core.errors import KbakError

ModelT = TypeVar("ModelT", bound=BaseModel)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Security(_Strict):
    """Names from the OSO docs, mapped to librdkafka settings."""

    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None

    def librdkafka(self) -> dict[str, str]:
        names = {
            "security_protocol": "security.protocol",
            "sasl_mechanism": "sasl.mechanism",
            "sasl_username": "sasl.username",
            "sasl_password": "sasl.password",
            "ssl_ca_location": "ssl.ca.location",
            "ssl_certificate_location": "ssl.certificate.location",
            "ssl_key_location": "ssl.key.location",
            "ssl_key_password": "ssl.key.password",
        }
        return {names[k]: v for k, v in self.model_dump().items() if v is not None}


class Topics(_Strict):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    _lists = field_validator("include", "exclude", mode="before")(_as_list)


class KafkaEndpoint(_Strict):
    bootstrap_servers: list[str] = Field(default_factory=list)
    security: Security = Field(default_factory=Security)
    # Any librdkafka setting, passed through as is (kbak's addition to the OSO shape).
    kafka: dict[str, str | int | bool] = Field(default_factory=dict)

    _servers = field_validator("bootstrap_servers", mode="before")(_as_list)

    def client_settings(self) -> dict[str, str]:
        conf = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.kafka.items()}
        conf.update(self.security.librdkafka())
        return conf


class Source(KafkaEndpoint):
    topics: Topics = Field(default_factory=Topics)
    group_id: str | None = None


class Encryption(_Strict):
    """``storage.encryption``: server-side encryption of every object kbak writes to S3."""

    sse: Literal["aws:kms", "AES256"] | None = None
    kms_key_id: str | None = None


class Storage(_Strict):
    backend: Literal["filesystem", "s3"] = "filesystem"
    path: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    region: str | None = None
    endpoint: str | None = None
    encryption: Encryption = Field(default_factory=Encryption)

    def lake_uri(self) -> str | None:
        if self.backend == "s3":
            if not self.bucket:
                raise KbakError("config: storage.bucket is required when storage.backend is s3")
            return f"s3://{self.bucket}/{(self.prefix or '').strip('/')}".rstrip("/")
        return self.path


class Backup(_Strict):
    compression: Literal["zstd"] = "zstd"
    compression_level: int = Field(default=3, ge=1, le=22)
    source_cluster_id: str | None = None
    continuous: bool | None = None
    flush_records: int | None = Field(default=None, gt=0)
    flush_bytes: int | None = Field(default=None, gt=0)
    flush_seconds: float | None = Field(default=None, gt=0)
    target_file_size: int | None = Field(default=None, gt=0)
    snapshot_groups: bool | None = None
    object_lock_days: int | None = Field(default=None, gt=0)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] | None = None  # processes on this host (--workers)
    compact: bool | None = None  # continuous: compact closed days (kbak compact)
    retention_apply: bool | None = None  # continuous: apply retention once a day
    maintenance_seconds: float | None = Field(default=None, gt=0)  # --maintenance-seconds
    snapshot_timeout_seconds: float | None = Field(default=None, ge=0)  # --snapshot-timeout
    unassigned_warning_seconds: float | None = Field(default=None, ge=0)  # --unassigned-warning-seconds
    connect_timeout_seconds: float | None = Field(default=None, gt=0)  # --connect-timeout
    topic_refresh_seconds: float | None = Field(default=None, gt=0)  # --topic-refresh-seconds


class RetentionRule(_Strict):
    """``retention:`` entries: the same policies as ``kbak retention set`` (full-match topic regex, days)."""

    topics: str
    days: int = Field(gt=0)
    reason: str | None = None


class SchemaRegistry(_Strict):
    """``schema_registry:``: where ingest fetches the schemas it keeps (confluent-kafka client settings)."""

    url: str | None = None
    basic_auth_user_info: str | None = None  # user:password
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    optional: bool = False


class BackupConfig(_Strict):
    """``kbak ingest --config``: ``mode: backup``."""

    mode: Literal["backup"] = "backup"
    backup_id: str | None = None
    source: Source = Field(default_factory=Source)
    storage: Storage = Field(default_factory=Storage)
    backup: Backup = Field(default_factory=Backup)
    schema_registry: SchemaRegistry = Field(default_factory=SchemaRegistry)
    retention: list[RetentionRule] = Field(default_factory=list)


class Restore(_Strict):
    time_window_start: int | str | None = None
    time_window_end: int | str | None = None
    topics: list[str] = Field(default_factory=list)
    topic_mapping: dict[str, str] = Field(default_factory=dict)
    partitions: list[int] = Field(default_factory=list)
    as_of: int | str | None = None
    repartition: Literal["murmur2", "round-robin"] | None = None
    create_topics: bool | None = None
    include_offset_headers: bool | None = None
    consumer_groups: list[str] = Field(default_factory=list)
    dry_run: bool | None = None
    rate_limit_records: float | None = Field(default=None, gt=0)
    rate_limit_bytes: float | None = Field(default=None, gt=0)
    checkpoint: str | None = None
    where: str | None = None
    key: str | None = None
    offsets: list[str] = Field(default_factory=list)
    max_records: int | None = Field(default=None, gt=0)

    _lists = field_validator("topics", "consumer_groups", "offsets", mode="before")(_as_list)


class RestoreConfig(_Strict):
    """``kbak replay --config``: ``mode: restore``."""

    mode: Literal["restore"] = "restore"
    backup_id: str | None = None
    target: KafkaEndpoint = Field(default_factory=KafkaEndpoint)
    storage: Storage = Field(default_factory=Storage)
    restore: Restore = Field(default_factory=Restore)


def expand_env(text: str, where: str) -> str:
    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise KbakError(f"{where}: environment variable {name} is not set (used as ${{{name}}})")

    return _VAR.sub(sub, text)


def load_config(path: str | Path, model: type[ModelT]) -> ModelT:
    """Read, expand and validate a YAML config file; every failure is one line naming the key."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise KbakError(f"cannot read config {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(expand_env(text, str(p))) or {}
    except yaml.YAMLError as exc:
        raise KbakError(f"config {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise KbakError(f"config {p} must be a mapping of keys")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise KbakError(f"config {p}: {describe_error(exc)}") from None


def describe_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    return f"bad value for {key!r}: {err['msg']}"
