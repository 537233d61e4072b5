"""Superseded Delta checkpoints ``kbak vacuum`` deletes: old read shortcuts go, the log stays.

A checkpoint is the table state at one version, written so readers need not replay the log from
version 0. delta-rs writes one every ``delta.checkpointInterval`` versions, each listing every live
file (with its statistics) and every tombstone. Kept with the seven-year log, they outweigh the data
by far: 13.3 GB of checkpoints beside 83 MB of data at 20,000 versions (docs/benchmarks.md#aging).

Time travel to version v starts at the newest checkpoint at or before v and replays the log entries
after it; every entry stays (the custody chain names each one), so no version becomes unreadable.
Vacuum keeps:

- the newest checkpoint (every reader of the current version starts there);
- every checkpoint of a version committed within ``RECENT`` of ``now`` (recent time travel, and a
  reader that chose one a moment ago, are unaffected);
- the first checkpoint of every ``KEEP_EVERY`` versions (0-999, 1,000-1,999, ...): older time travel
  replays at most about that many entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.core.storage import Lake
from pipeline.custody.chain import VersionRecord
from pipeline.custody.manifest import sha256_hex

KEEP_EVERY = 1_000
RECENT = timedelta(days=1)
_NAME = re.compile(r"_delta_log/(\d{20})\.checkpoint(?:\.\d+\.\d+)?\.parquet")


@dataclass
class Checkpoint:
    path: str
    version: int
    sha256: str  # as sealed in the version's manifest, else of the bytes deleted
    size: int


def superseded(lake: Lake, chain: list[VersionRecord], present: Mapping[str, int], now: datetime) -> list[Checkpoint]:
    """The checkpoints vacuum may delete now, oldest first.

    ``present``: the size of every file in the lake, by relative path (the listing vacuum already made).
    """
    found: dict[int, list[str]] = {}
    for path in sorted(present):
        m = _NAME.fullmatch(path)
        if m:
            found.setdefault(int(m.group(1)), []).append(path)
    if not found:
        return []
    first_of_block: dict[int, int] = {}
    for version in sorted(found):
        first_of_block.setdefault(version // KEEP_EVERY, version)
    keep = {max(found), *first_of_block.values()}
    by_version = {rec.version: rec for rec in chain}
    out = []
    for version in sorted(found):
        rec = by_version.get(version)
        if version in keep or rec is None or not _older(rec, now):
            continue
        sealed = (rec.manifest or {}).get("checkpoint_sha256") if len(found[version]) == 1 else None
        for path in found[version]:
            digest = sealed or sha256_hex(lake.read_bytes(path))
            out.append(Checkpoint(path, version, digest, present[path]))
    return out


def _older(rec: VersionRecord, now: datetime) -> bool:
    stamp = rec.info.get("timestamp")
    return isinstance(stamp, int) and datetime.fromtimestamp(stamp / 1000, UTC) < now - RECENT
