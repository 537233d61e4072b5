"""Reading data files for deep validation and the report: checksum, full Parquet decode, offsets, gaps.

Each file is fetched once: the same bytes are hashed and decoded. Only the (partition, offset) pairs
are kept past the file, so memory stays at ~12 bytes per archived record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.core.errors import first_line
from pipeline.core.ranges import partition_ranges
from pipeline.core.schema import FILE_SCHEMA, same_type
from pipeline.core.storage import Lake, storage_error

ROWS_PER_BATCH = 65_536
KEPT = ("partition", "offset", "timestamp")


@dataclass
class FileScan:
    """What one data file holds, or why it could not be read."""

    path: str
    sha256: str | None = None
    size: int | None = None
    rows: int | None = None
    error: str | None = None  # "missing" or the Parquet decode error
    schema_problem: str | None = None
    unordered_partitions: list[int] = field(default_factory=list)  # offsets not strictly increasing
    ranges: list[dict] = field(default_factory=list)  # per partition: records, offsets, timestamps (ms)
    keys: pa.Table | None = None  # partition, offset of every row


def scan_file(lake: Lake, path: str) -> FileScan:
    scan = FileScan(path)
    try:
        data = lake.read_bytes(path)
    except FileNotFoundError:
        scan.error = "missing"
        return scan
    scan.size = len(data)
    scan.sha256 = hashlib.sha256(data).hexdigest()
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        scan.schema_problem = schema_problem(pf.schema_arrow)
        if scan.schema_problem:
            return scan
        # Decode every column of every row group (a corrupt page fails here), one batch at a time.
        kept = [batch.select(list(KEPT)) for batch in pf.iter_batches(batch_size=ROWS_PER_BATCH, use_threads=False)]
    except Exception as exc:  # pyarrow raises several types for corrupt files
        scan.error = f"not readable as Parquet: {first_line(exc, 200)}"
        return scan
    table = pa.Table.from_batches(kept, schema=pa.schema([pf.schema_arrow.field(n) for n in KEPT]))
    scan.rows = table.num_rows
    if table.num_rows == 0:
        return scan
    part, offset = table["partition"], table["offset"]
    scan.keys = pa.table({"partition": part, "offset": offset})
    scan.unordered_partitions = _unordered(part.to_numpy(), offset.to_numpy())
    scan.ranges = partition_ranges(table, by=("partition",))
    return scan


def schema_problem(schema: pa.Schema) -> str | None:
    """None when a data file has kbak's file schema, else the first difference."""
    if schema.names != FILE_SCHEMA.names:
        return f"columns {schema.names}, expected {FILE_SCHEMA.names}"
    for f in FILE_SCHEMA:
        got = schema.field(f.name).type
        if not same_type(got, f.type):
            return f"column {f.name!r} is {got}, expected {f.type}"
    return None


def _unordered(partitions: np.ndarray, offsets: np.ndarray) -> list[int]:
    bad = []
    for p in np.unique(partitions):
        o = offsets[partitions == p]
        if o.size > 1 and not bool(np.all(np.diff(o) > 0)):
            bad.append(int(p))
    return bad


def storage_sizes(lake: Lake) -> dict[str, int]:
    """Size of every file under the lake, from one recursive listing (one LIST call chain on S3)."""
    return {rel: info.size for rel, info in storage_files(lake).items()}


def storage_files(lake: Lake) -> dict[str, pafs.FileInfo]:
    """Every file under the lake (size, modification time), by path relative to the lake, in one listing."""
    try:
        infos = lake.fs.get_file_info(pafs.FileSelector(lake.root, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise storage_error(lake, exc) or exc from None
    cut = len(lake.root) + 1
    return {i.path[cut:]: i for i in infos if i.type == pafs.FileType.File}


@dataclass
class Keys:
    """Every archived (topic, partition, offset), sorted, with the file (and day) each row is in.

    Topics and files are small-integer ids into ``topics`` / ``files`` so memory stays ~20 bytes a row.
    """

    topic: np.ndarray
    partition: np.ndarray
    offset: np.ndarray
    file: np.ndarray
    topics: list[str]
    files: list[str]
    day: np.ndarray | None = None

    @classmethod
    def build(cls, parts: list[tuple[str, str, pa.Table]], with_day: list | None = None) -> Keys:
        """``parts``: (topic, file, table with partition and offset) per file; ``with_day``: a date per file."""
        topics = sorted({t for t, _f, _k in parts})
        tid = {t: i for i, t in enumerate(topics)}
        files = [f for _t, f, _k in parts]
        cols: dict[str, list[np.ndarray]] = {"topic": [], "partition": [], "offset": [], "file": [], "day": []}
        for i, (topic, _f, k) in enumerate(parts):
            n = k.num_rows
            cols["topic"].append(np.full(n, tid[topic], np.int32))
            cols["partition"].append(k["partition"].to_numpy().astype(np.int32))
            cols["offset"].append(k["offset"].to_numpy().astype(np.int64))
            cols["file"].append(np.full(n, i, np.int32))
            if with_day is not None:
                cols["day"].append(np.full(n, np.datetime64(with_day[i], "D")))
        cat = {k: (np.concatenate(v) if v else np.array([], np.int64)) for k, v in cols.items()}
        order = np.lexsort((cat["offset"], cat["partition"], cat["topic"]))
        day = cat["day"][order] if with_day is not None and len(order) else None
        return cls(
            cat["topic"][order], cat["partition"][order], cat["offset"][order], cat["file"][order], topics, files, day
        )

    def offsets_of(self, topic: str, partition: int, first: int, last: int) -> np.ndarray:
        """The archived offsets of one partition within [first, last], sorted."""
        if topic not in self.topics:
            return np.array([], np.int64)
        tid = self.topics.index(topic)
        mask = (self.topic == tid) & (self.partition == partition) & (self.offset >= first) & (self.offset <= last)
        return np.unique(self.offset[mask])

    def _same_partition(self) -> np.ndarray:
        return (self.topic[1:] == self.topic[:-1]) & (self.partition[1:] == self.partition[:-1])


def duplicates(keys: Keys) -> list[dict]:
    """(topic, partition, offset) archived more than once, with the files holding it."""
    if keys.offset.size < 2:
        return []
    dup = np.nonzero(keys._same_partition() & (keys.offset[1:] == keys.offset[:-1]))[0]
    found: dict[tuple[str, int, int], set[str]] = {}
    for i in dup:
        key = (keys.topics[keys.topic[i]], int(keys.partition[i]), int(keys.offset[i]))
        found.setdefault(key, set()).update({keys.files[keys.file[i]], keys.files[keys.file[i + 1]]})
    return [{"topic": t, "partition": p, "offset": o, "files": sorted(f)} for (t, p, o), f in sorted(found.items())]


def find_gaps(keys: Keys, recorded: list[dict], leading: bool = True) -> list[dict]:
    """Offset holes per (topic, partition), told recorded (by ingest) or unexplained.

    ``leading``: also the hole from offset 0 to a partition's first archived offset. With days in
    ``keys``, each gap carries the days of the records either side of it (``days``).
    """
    if keys.offset.size == 0:
        return []
    n = keys.offset.size
    same = keys._same_partition()
    inner = np.nonzero(same & (keys.offset[1:] - keys.offset[:-1] > 1))[0]
    holes = [(int(i), int(i) + 1) for i in inner]  # (index before, index after)
    if leading:
        starts = np.concatenate(([0], np.nonzero(~same)[0] + 1)) if n > 1 else np.array([0])
        holes += [(-1, int(i)) for i in starts if keys.offset[i] > 0]
    out = []
    for before, after in holes:
        topic, partition = keys.topics[keys.topic[after]], int(keys.partition[after])
        first = int(keys.offset[before]) + 1 if before >= 0 else 0
        last = int(keys.offset[after]) - 1
        mine = [g for g in recorded if g.get("topic") == topic and g.get("partition") == partition]
        gap = {
            "topic": topic,
            "partition": partition,
            "first_missing": first,
            "last_missing": last,
            "count": last - first + 1,
            **explain_gap(first, last, mine),
        }
        if keys.day is not None:
            gap["days"] = (keys.day[before].item() if before >= 0 else None, keys.day[after].item())
        out.append(gap)
    return sorted(out, key=lambda g: (g["topic"], g["partition"], g["first_missing"]))


def recorded_gaps(bodies) -> list[dict]:
    """Every offset hole the chain explains, as ``{topic, partition, first_missing, last_missing, reason}``.

    Ingest records what the source had already deleted (``gaps``, ``deleted_before_archive``); erasure
    and retention record what they removed (``removed_offsets``, reason ``erased`` / ``retention``).
    """
    out = []
    for body in bodies:
        out.extend((body or {}).get("gaps") or [])
        for r in (body or {}).get("removed_offsets") or []:
            out.append(
                {
                    "topic": r["topic"],
                    "partition": r["partition"],
                    "first_missing": r["first_offset"],
                    "last_missing": r["last_offset"],
                    "reason": r.get("reason", "removed"),
                }
            )
    return out


def explain_gap(first: int, last: int, recorded: list[dict]) -> dict:
    """A hole is recorded when ingest's recorded gaps cover every offset of it."""
    covered = first
    for g in sorted(recorded, key=lambda g: g["first_missing"]):
        if g["first_missing"] <= covered <= g["last_missing"]:
            covered = g["last_missing"] + 1
    if covered > last:
        hit = [g for g in recorded if g["first_missing"] <= last and g["last_missing"] >= first]
        reasons = sorted({g.get("reason", "recorded") for g in hit})
        return {"recorded": True, "reason": ",".join(reasons) or "recorded"}
    return {"recorded": False, "reason": "unexplained"}
