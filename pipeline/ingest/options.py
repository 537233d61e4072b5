"""What an ingest run is asked to do."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.core import defaults
from pipeline.core.storage import Lake

if TYPE_CHECKING:
    from pipeline.schemas.registry import RegistryOptions


@dataclass
class IngestOptions:
    bootstrap_servers: str
    lake: Lake
    topics: list[str]
    exclude: list[str] = field(default_factory=list)
    once: bool = False
    group_id: str | None = None
    source_cluster_id: str | None = None
    backup_id: str | None = None
    compression_level: int = defaults.COMPRESSION_LEVEL
    flush_records: int = defaults.FLUSH_RECORDS
    flush_bytes: int = defaults.FLUSH_BYTES
    flush_seconds: float = defaults.FLUSH_SECONDS
    target_file_size: int = defaults.TARGET_FILE_SIZE
    kafka_settings: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None
    topic_refresh_seconds: float = defaults.TOPIC_REFRESH_S
    snapshot_groups: bool = False
    object_lock_days: int | None = None
    # --once: how long to wait, once this worker has nothing left to read, for the rest of the
    # snapshot (partitions other members of the group hold) before failing.
    snapshot_timeout_seconds: float = defaults.SNAPSHOT_TIMEOUT_S
    # Continuous: warn when no partition has been assigned to this worker this long.
    unassigned_warning_seconds: float = defaults.UNASSIGNED_WARNING_S
    schema_registry: RegistryOptions | None = None  # keep the schemas of wire-format records
    schema_registry_optional: bool = False  # archive records whose schema the registry cannot give now
    connect_timeout_s: float = defaults.CONNECT_TIMEOUT_S


def default_group_id(lake: Lake) -> str:
    """One consumer group per lake, so unrelated ingests never split each other's partitions."""
    return "kbak-" + hashlib.sha1(lake.uri.encode()).hexdigest()[:12]
