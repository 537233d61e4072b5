"""Reading the rows a replay selects: pruned, filtered, ordered per source partition, streamed in batches.

The data files come from the Delta log of one pinned version (deltalake's add actions: partition
values and per-file statistics), so only files that version references are read, and an older
version reads each file as kbak's readset says (erasure's replacements; ``core/readset.py``).
Files are pruned on the ``topic``/``date`` partition values and on the ``partition``, ``offset``
and ``timestamp`` statistics, then read with pyarrow's Parquet reader and filtered there: no SQL
engine is loaded for a replay unless ``--where`` asks for one. ``--where`` is evaluated by the shared
SQL engine (``pipeline.query.engine.connect``: DuckDB with ``kbak query``'s macros) over the rows
read, so it means what it means in ``kbak query``.

Each topic is read in chunks of about ``chunk_rows`` selected rows: chunk k holds the k-th of
``chunks`` equal offset ranges of every partition, read from the files whose statistics overlap
those ranges and sorted on its own by (partition, offset). Memory depends on ``chunk_rows``, not on
the size of the window.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.errors import KbakError, first_line
from pipeline.core.readset import read_paths
from pipeline.core.schema import RECORD_SCHEMA
from pipeline.core.table import open_table
from pipeline.core.timefmt import EPOCH
from pipeline.replay.masks import Mask, all_of, any_of, in_range, in_ranges, not_done
from pipeline.replay.options import ReplayOptions
from pipeline.replay.summary import with_iso_times
from pipeline.replay.where import WhereFilter

_TS = RECORD_SCHEMA.field("timestamp").type
# What a replay reads of each file (topic and date are partition values, in the log, not in the files).
_READ = ["partition", "offset", "timestamp", "key", "value", "headers", "source_cluster"]
_PLAN = ["partition", "offset", "timestamp"]
_PLAN_ROWS = 1_000_000  # rows of (partition, offset, timestamp) aggregated at a time: ~20 MB
_ORDER = [("partition", "ascending"), ("offset", "ascending")]
# Batches read ahead. 6 (about the time reading the next chunk takes) cut the producing loop's waits
# at chunk boundaries in a 300,000-record replay, but added 25-30 MB of peak RSS for 1,000,000 records
# (358 -> 382-391 MB) with no wall-time gain measurable on the shared 2-core machine.
PREFETCH = 2


@dataclass(frozen=True)
class PartitionPlan:
    """What a replay would produce from one source partition."""

    topic: str
    partition: int
    records: int
    bytes: int | None  # key + value bytes (computed for dry runs)
    first_offset: int
    last_offset: int
    first_timestamp_ms: int
    last_timestamp_ms: int

    def as_dict(self) -> dict:
        return with_iso_times(asdict(self))


@dataclass(frozen=True)
class _File:
    """One data file to read, with what its statistics say (None: unknown, never pruned on)."""

    path: str  # lake-relative
    date: date
    partitions: tuple[int, int] | None
    offsets: tuple[int, int] | None

    def overlaps(self, ranges: list[tuple[int, int, int]]) -> bool:
        """Whether the file may hold a row of one of these (partition, first offset, last offset) ranges."""
        for p, low, high in ranges:
            if self.partitions is not None and not self.partitions[0] <= p <= self.partitions[1]:
                continue
            if self.offsets is not None and (high < self.offsets[0] or low > self.offsets[1]):
                continue
            return True
        return False


class Selection:
    """The archive rows a replay selects, at one table version. Raises KbakError on bad input."""

    def __init__(self, options: ReplayOptions, version: int | None = None, resume: dict | None = None) -> None:
        self.options = options
        pinned = version if version is not None else options.as_of
        dt = open_table(options.lake, pinned)
        self.version: int = dt.version()
        self._files = pa.table(dt.get_add_actions(flatten=True))
        self.archived = _archived_partitions(self._files)  # topic -> partition count the archive implies
        self.topics = self._choose_topics()
        self._resume = resume or {}
        self._scan = self._pruned(readset=pinned is not None)
        self._plans: dict[str, list[PartitionPlan]] = {}  # topic -> its plan (without bytes)
        self._reading: threading.Event | None = None  # set: the prefetching thread stops
        self.where = options.where
        self._sql = WhereFilter(options.lake, self.version, self.where) if self.where else None

    # -- validation ---------------------------------------------------------------------------

    def _choose_topics(self) -> list[str]:
        o = self.options
        archived = sorted(self.archived)
        wanted = list(dict.fromkeys(o.topics)) or archived
        for name, flag in [(t, "--topic") for t in wanted] + [(t, "--topic-map") for t in o.topic_map]:
            if name not in self.archived:
                have = ", ".join(archived) if archived else "none"
                raise KbakError(f"{flag}: topic {name!r} is not in the archive at {o.lake.uri} (archived: {have})")
        return wanted

    # -- which files: partition values and statistics from the Delta log -----------------------

    def _pruned(self, readset: bool) -> dict[str, list[_File]]:
        """Per selected topic, the files that may hold selected rows.

        ``readset``: a pinned (possibly older) version, whose files are read as kbak's readset says;
        a file read through a replacement is never pruned on statistics (they describe the original).
        """
        o, files = self.options, self._files
        out: dict[str, list[_File]] = {t: [] for t in self.topics}
        if files.num_rows == 0:
            return out
        mask = pc.is_in(files["partition.topic"], pa.array(self.topics))
        if o.from_ms is not None:
            mask = pc.and_(mask, pc.greater_equal(files["partition.date"], pa.scalar(_day(o.from_ms))))
            # Delta may truncate timestamp statistics to milliseconds: a maximum within 1 ms may hide a match
            low = pa.scalar((o.from_ms - 1) * 1000, _TS)
            mask = pc.and_kleene(
                mask, pc.or_kleene(pc.is_null(files["max.timestamp"]), pc.greater_equal(files["max.timestamp"], low))
            )
        if o.to_ms is not None:
            mask = pc.and_(mask, pc.less_equal(files["partition.date"], pa.scalar(_day(o.to_ms))))
            high = pa.scalar(o.to_ms * 1000, _TS)
            mask = pc.and_kleene(
                mask, pc.or_kleene(pc.is_null(files["min.timestamp"]), pc.less_equal(files["min.timestamp"], high))
            )
        chosen = files.filter(mask)
        rows = chosen.select(
            ["path", "partition.topic", "partition.date", "min.partition", "max.partition", "min.offset", "max.offset"]
        ).to_pylist()
        paths = read_paths(o.lake, [r["path"] for r in rows]) if readset else [r["path"] for r in rows]
        wanted = self._wanted_ranges()
        seen: set[str] = set()
        for r, path in zip(rows, paths, strict=True):
            if path is None or path in seen:
                continue
            seen.add(path)
            stats = path == r["path"]
            parts = (r["min.partition"], r["max.partition"]) if stats and r["max.partition"] is not None else None
            offs = (r["min.offset"], r["max.offset"]) if stats and r["max.offset"] is not None else None
            f = _File(path, r["partition.date"], parts, offs)
            if wanted is None or f.overlaps(wanted):
                out[r["partition.topic"]].append(f)
        return out

    def _wanted_ranges(self) -> list[tuple[int, int, int]] | None:
        """--partition / --offsets as (partition, first, last) ranges for file pruning (None: any)."""
        o, big = self.options, 1 << 62
        ranges = [(r.partition, r.start, r.end if r.end is not None else big) for r in o.offsets]
        if o.partitions:
            keep = set(o.partitions)
            ranges = [r for r in ranges if r[0] in keep] if o.offsets else [(p, -big, big) for p in sorted(keep)]
        return ranges if (o.offsets or o.partitions) else None

    # -- which rows: the structured filter, evaluated on each file's rows ----------------------

    def _filter(self, topic: str) -> Mask | None:
        """The structured filter of one topic's rows (None: every row), as vectorised comparisons
        (pyarrow's expression filter runs a query plan per call: slow for one file at a time)."""
        o = self.options
        parts: list[Mask] = []
        if o.from_ms is not None:
            low = pa.scalar(o.from_ms * 1000, _TS)
            parts.append(lambda t: pc.greater_equal(t["timestamp"], low))
        if o.to_ms is not None:
            high = pa.scalar(o.to_ms * 1000, _TS)
            parts.append(lambda t: pc.less_equal(t["timestamp"], high))
        if o.partitions:
            chosen = pa.array(sorted(set(o.partitions)), pa.int32())
            parts.append(lambda t: pc.is_in(t["partition"], value_set=chosen))
        if o.offsets:
            ranges = [(r.partition, r.start, r.end) for r in o.offsets]
            parts.append(lambda t: any_of(in_range(t, *r) for r in ranges))
        if o.key is not None:
            key = pa.scalar(o.key, pa.binary())
            parts.append(lambda t: pc.equal(t["key"], key))
        for (t_, partition), (last, extra) in sorted(self._resume.items()):
            if t_ == topic and (last is not None or extra):
                parts.append(not_done(int(partition), last, extra))
        return all_of(parts)

    def _columns(self, wanted: list[str]) -> list[str]:
        """The columns to read: those wanted plus the ones the filter looks at (every one for --where)."""
        if self._sql is not None:
            return [n for n in RECORD_SCHEMA.names if n not in ("topic", "date")]
        o = self.options
        need = [*wanted, *(["timestamp"] if o.from_ms is not None or o.to_ms is not None else [])]
        need += ["key"] if o.key is not None else []
        return [c for c in _READ if c in need]

    def _rows(self, topic: str, f: _File, columns: list[str], where: Mask | None) -> pa.Table:
        """One file's selected rows (its structured filter, ``where``, and --where) in file order."""
        try:
            table = pq.ParquetFile(
                self.options.lake.path(f.path), filesystem=self.options.lake.fs, pre_buffer=self.options.lake.is_s3
            ).read(columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise KbakError(f"reading the archive failed: {f.path}: {first_line(exc)}") from None
        if where is not None and table.num_rows:
            mask = where(table)
            kept = pc.sum(mask).as_py() or 0  # nulls (a comparison with a null key) count as not kept
            if kept < table.num_rows:  # a file wholly inside the window or chunk is not copied
                table = table.filter(mask) if kept else table.slice(0, 0)
        if self._sql is not None and table.num_rows:
            table = self._sql.keep(table, topic, f.date)
        return table

    # -- planning ------------------------------------------------------------------------------

    def partition_bound(self) -> dict[str, int]:
        """Per selected topic, an upper bound of (highest selected partition + 1), from the Delta log's
        file statistics alone: no scan, and exact unless --where/--key/--offsets leave high partitions out."""
        o, files = self.options, self._files
        if files.num_rows == 0:
            return {}
        mask = pc.is_in(files["partition.topic"], pa.array(self.topics))
        if o.from_ms is not None:
            mask = pc.and_(mask, pc.greater_equal(files["partition.date"], pa.scalar(_day(o.from_ms))))
        if o.to_ms is not None:
            mask = pc.and_(mask, pc.less_equal(files["partition.date"], pa.scalar(_day(o.to_ms))))
        agg = files.filter(mask).group_by("partition.topic").aggregate([("max.partition", "max")])
        wanted = set(o.partitions or [r.partition for r in o.offsets])
        if o.partitions and o.offsets:
            wanted &= {r.partition for r in o.offsets}
        out = {}
        for r in agg.to_pylist():
            high = r["max.partition_max"] if r["max.partition_max"] is not None else 0
            if wanted:
                chosen = [p for p in wanted if p <= high]
                if not chosen:
                    continue
                high = max(chosen)
            out[r["partition.topic"]] = high + 1
        return out

    def plan(self, with_bytes: bool = False) -> list[PartitionPlan]:
        """Per source partition: count, offset and timestamp range (and key + value bytes when asked)."""
        return [p for topic in sorted(self.topics) for p in self._topic_plan(topic, with_bytes)]

    def _topic_plan(self, topic: str, with_bytes: bool = False) -> list[PartitionPlan]:
        """``plan()`` of one topic (kept, without bytes: ``batches()`` plans a topic as it reaches it)."""
        if not with_bytes and topic in self._plans:
            return self._plans[topic]
        columns = self._columns(_PLAN + (["key", "value"] if with_bytes else []))
        where = self._filter(topic)
        acc: dict[int, list] = {}
        pending: list[pa.Table] = []  # aggregated together: one group_by per file costs more than the read
        held = 0
        for i, f in enumerate(self._scan[topic], 1):
            t = self._rows(topic, f, columns, where)
            if t.num_rows:
                cols = {"partition": t["partition"], "offset": t["offset"], "ts": _ms(t["timestamp"])}
                if with_bytes:
                    cols["size"] = _size(t["key"], t["value"])
                pending.append(pa.table(cols))
                held += t.num_rows
            if pending and (held >= _PLAN_ROWS or i == len(self._scan[topic])):
                _aggregate(pa.concat_tables(pending), with_bytes, acc)
                pending, held = [], 0
        plan = [
            PartitionPlan(topic, p, a[0], None if a[1] is None else int(a[1]), *a[2:]) for p, a in sorted(acc.items())
        ]
        if not with_bytes:
            self._plans[topic] = plan
        return plan

    # -- reading -------------------------------------------------------------------------------

    def batches(self, rows: int | None = None, only: tuple[str, int] | None = None) -> Iterator[pa.RecordBatch]:
        """Selected rows (of one source partition with ``only``), each source partition's in offset
        order, as columns topic, partition, offset, ts_ms, key, value, headers, source_cluster, size
        (key + value bytes).

        A topic is read in chunks of about ``chunk_rows`` selected rows, each sorted on its own by
        (partition, offset), so memory depends on ``chunk_rows``, not on the size of the window.
        Chunk k holds the k-th of ``chunks`` equal offset ranges of every partition of the topic,
        read from the files whose statistics overlap them (each file about once when offsets and
        times go together). Within a topic of up to ``chunk_rows`` selected rows the order is
        (partition, offset); beyond that the partitions' ranges take turns, each partition still
        in offset order.
        """
        rows = rows or self.options.batch_rows
        columns = self._columns(_READ)
        for topic in sorted(self.topics) if only is None else [t for t in self.topics if t == only[0]]:
            parts = [p for p in self._topic_plan(topic) if only is None or p.partition == only[1]]
            if not parts:
                continue
            where = self._filter(topic)
            chunks = max(1, -(-sum(p.records for p in parts) // self.options.chunk_rows))
            spans = [-(-(p.last_offset - p.first_offset + 1) // chunks) for p in parts]
            for chunk in range(chunks):
                ranges = []
                for p, span in zip(parts, spans, strict=True):
                    low = p.first_offset + chunk * span
                    if low <= p.last_offset:
                        ranges.append((p.partition, low, min(low + span - 1, p.last_offset)))
                if not ranges:
                    continue
                # one chunk of the whole topic needs no range filter (the plan's ranges cover every row)
                whole = chunks == 1 and only is None
                scope = where if whole else all_of([where, in_ranges(ranges)])
                read = [self._rows(topic, f, columns, scope) for f in self._scan[topic] if f.overlaps(ranges)]
                read = [t.select(_READ) for t in read if t.num_rows]
                if not read:
                    continue
                table = pa.concat_tables(read, promote_options="permissive")
                del read
                table = table.combine_chunks()  # one copy; a take across one chunk per file is slow
                order = pc.sort_indices(table, sort_keys=_ORDER)
                for start in range(0, table.num_rows, rows):
                    yield _output(topic, table.take(order.slice(start, rows)))

    def rows_after(self, source: tuple[str, int], limit: int) -> list[dict]:
        """The next ``limit`` selected rows of one source partition, in offset order, as Python values."""
        out: list[dict] = []
        for batch in self.batches(rows=limit, only=source):
            out.extend(batch.drop_columns(["size"]).to_pylist()[: limit - len(out)])
            if len(out) >= limit:
                break
        return out

    def prefetched(self, depth: int = PREFETCH) -> Iterator[pa.RecordBatch]:
        """``batches()`` read ahead on a thread: pyarrow reads, filters and sorts the next batches
        (without the GIL) while the caller produces the current one. Memory: at most ``depth``
        batches waiting.

        The reading starts now, not at the first ``next()``: planning and the first chunk overlap
        whatever the caller still does before producing (target checks, the checkpoint's first save).
        ``close()`` (or closing the iterator) stops it.
        """
        reader = self.batches()
        q: queue.Queue = queue.Queue(maxsize=depth)
        done = self._reading = threading.Event()

        def offer(item) -> bool:
            while not done.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False  # the consumer has gone

        def pump() -> None:
            try:
                for batch in reader:
                    if not offer(batch):
                        return
                offer(None)
            except BaseException as exc:  # handed to the consumer, raised there
                offer(exc)

        thread = threading.Thread(target=pump, name="kbak-replay-read", daemon=True)
        thread.start()
        return _drain(q, done, thread)

    def close(self) -> None:
        if self._reading is not None:
            self._reading.set()
        if self._sql is not None:
            self._sql.close()


def _drain(q: queue.Queue, done: threading.Event, thread: threading.Thread) -> Iterator[pa.RecordBatch]:
    """The consuming side of ``Selection.prefetched``: batches in order, the reader's error raised here."""
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, KbakError):
                    raise item
                raise KbakError(f"reading the archive failed: {first_line(item)}") from None
            yield item
    finally:
        done.set()
        thread.join(timeout=10)


def _output(topic: str, table: pa.Table) -> pa.RecordBatch:
    """A sorted slice as the batch ``Sender`` produces from."""
    table = table.combine_chunks()
    n = table.num_rows
    arrays = [
        pa.repeat(pa.scalar(topic), n),
        table["partition"],
        table["offset"],
        _ms(table["timestamp"]),
        table["key"],
        table["value"],
        table["headers"],
        table["source_cluster"],
        _size(table["key"], table["value"]),
    ]
    names = ["topic", "partition", "offset", "ts_ms", "key", "value", "headers", "source_cluster", "size"]
    return pa.RecordBatch.from_arrays(
        [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays], names
    )


def _ms(ts) -> pa.Array:
    return pc.divide(pc.cast(ts, pa.int64()), 1000)


def _size(key, value) -> pa.Array:
    return pc.add(pc.fill_null(pc.binary_length(key), 0), pc.fill_null(pc.binary_length(value), 0)).cast(pa.int64())


def _aggregate(t: pa.Table, with_bytes: bool, acc: dict[int, list]) -> None:
    """Add a table of (partition, offset, ts[, size]) rows to the per-partition plans in ``acc``."""
    aggs = [("offset", "count"), ("offset", "min"), ("offset", "max"), ("ts", "min"), ("ts", "max")]
    agg = t.group_by("partition").aggregate(aggs + ([("size", "sum")] if with_bytes else []))
    for r in agg.to_pylist():
        one = [r["offset_count"], r.get("size_sum"), r["offset_min"], r["offset_max"], r["ts_min"], r["ts_max"]]
        have = acc.get(r["partition"])
        acc[r["partition"]] = one if have is None else _merge(have, one)


def _merge(a: list, b: list) -> list:
    """Two partial plans of one partition: [count, bytes, first offset, last offset, first ts, last ts]."""
    size = None if a[1] is None else a[1] + b[1]
    return [a[0] + b[0], size, min(a[2], b[2]), max(a[3], b[3]), min(a[4], b[4]), max(a[5], b[5])]


def _archived_partitions(actions: pa.Table) -> dict[str, int]:
    """Per archived topic, the partition count the archive implies (highest partition seen + 1)."""
    if actions.num_rows == 0:
        return {}
    agg = actions.group_by("partition.topic").aggregate([("max.partition", "max")])
    return {r["partition.topic"]: (r["max.partition_max"] or 0) + 1 for r in agg.to_pylist()}


def _day(ms: int):
    return (EPOCH + timedelta(milliseconds=ms)).date()
