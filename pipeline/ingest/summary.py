"""What an ingest run reports when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestSummary:
    backup_id: str
    lake: str
    source_cluster: str
    topics: list[str]
    records: int = 0
    bytes_written: int = 0
    commits: int = 0
    first_version: int | None = None
    last_version: int | None = None
    duration_s: float = 0.0
    partitions: dict[str, dict[int, dict]] = field(default_factory=dict)
    gaps: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schemas: dict | None = None  # with --schema-registry: kept, unknown and unkept schema ids

    def as_dict(self) -> dict:
        return {
            "backup_id": self.backup_id,
            "lake": self.lake,
            "source_cluster": self.source_cluster,
            "topics": self.topics,
            "records": self.records,
            "bytes_written": self.bytes_written,
            "commits": self.commits,
            "versions": [self.first_version, self.last_version],
            "duration_s": round(self.duration_s, 3),
            "records_per_s": round(self.records / self.duration_s, 1) if self.duration_s else None,
            "partitions": {t: {str(p): v for p, v in ps.items()} for t, ps in self.partitions.items()},
            "gaps": self.gaps,
            "warnings": self.warnings,
            **({"schemas": self.schemas} if self.schemas is not None else {}),
        }
