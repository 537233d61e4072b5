"""Reading the rows a replay selects: pruned, filtered, ordered per source partition, streamed in batches.

The rows come from the shared SQL engine (``pipeline.query.engine.connect``: DuckDB over the Delta table
at one pinned version), so ``--where`` means what it means in ``kbak query`` and has the same
macros. The structured filters (topic, window, partitions, offsets, key, resume position) are
plain comparisons on ``records``' columns: DuckDB pushes them into the Delta scan, where the
``topic``/``date`` partition values and the files' statistics skip what cannot match. DuckDB's
sort yields each source partition in offset order, about ``chunk_rows`` rows of a topic at a time,
so memory stays bounded whatever the window (DuckDB is also capped at ``MEMORY_LIMIT``
and spills to a temporary directory beyond it); the result streams as Arrow record batches.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.errors import KbakError, first_line
from pipeline.core.table import open_table
from pipeline.core.timefmt import EPOCH
from pipeline.query.engine import connect, sql_literal
from pipeline.replay.options import ReplayOptions
from pipeline.replay.summary import with_iso_times

MEMORY_LIMIT = "128MB"
# One DuckDB thread: the reading runs ahead of the producing loop anyway (it waits on the prefetch
# queue most of the time), and each extra thread holds its own scan and decompression buffers.
THREADS = 1
_ROWS = "_kbak_replay_rows"
_SCOPE = "_kbak_replay_scope"
_COLUMNS = 'topic, "partition", "offset", "timestamp", timestamp_type, {key}, {value}, headers, "date", source_cluster'
# In --where, key and value read as text (as_text: UTF-8, other bytes as \xNN escapes), so the issue's
# `value LIKE '%customer-42%'` works; the raw bytes are key_bytes / value_bytes.
_SCOPE_SQL = (
    f"CREATE TEMP VIEW {_SCOPE} AS SELECT "
    + _COLUMNS.format(key='as_text("key") AS "key"', value='as_text("value") AS "value"')
    + f', ingested_at, "key" AS key_bytes, "value" AS value_bytes FROM {_ROWS}'
)
_BYTES = "coalesce(octet_length({k}), 0) + coalesce(octet_length({v}), 0)"


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


class Selection:
    """The archive rows a replay selects, at one table version. Raises KbakError on bad input."""

    def __init__(self, options: ReplayOptions, version: int | None = None, resume: dict | None = None) -> None:
        self.options = options
        dt = open_table(options.lake, version if version is not None else options.as_of)
        self.version: int = dt.version()
        self._files = pa.table(dt.get_add_actions(flatten=True))
        self.archived = _archived_partitions(self._files)  # topic -> partition count the archive implies
        self.topics = self._choose_topics()
        self.con = connect(options.lake, as_of=self.version, audit=False)  # replay logs its own access
        self._tmp = tempfile.TemporaryDirectory(prefix="kbak-replay-")
        self.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        self.con.execute(f"SET threads = {THREADS}")
        self.con.execute(f"SET temp_directory = {sql_literal(self._tmp.name)}")
        self.con.execute(f"CREATE TEMP VIEW {_ROWS} AS SELECT * FROM records WHERE {self._filter(resume or {})}")
        self.where = options.where
        if self.where:
            self.con.execute(_SCOPE_SQL)
            self._check_where()

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

    def _check_where(self) -> None:
        try:
            self.con.execute(f"EXPLAIN SELECT 1 FROM {_SCOPE} WHERE ({self.where})")
        except duckdb.ParserException as exc:
            raise KbakError(f"--where is not valid SQL: {first_line(exc)}") from None
        except duckdb.BinderException as exc:
            detail = first_line(exc)
            if "not found" in detail or "does not have a column" in detail:
                raise KbakError(f"--where names an unknown column: {detail}") from None
            if "decode(VARCHAR)" in detail:  # a kbak query macro given the text column
                detail += " (in --where key and value are text: give the macros key_bytes / value_bytes)"
            raise KbakError(f"--where cannot be evaluated: {detail}") from None
        except duckdb.Error as exc:
            raise KbakError(f"--where cannot be evaluated: {first_line(exc)}") from None

    # -- the structured filter (pushed into the Delta scan) -----------------------------------

    def _filter(self, resume: dict) -> str:
        o = self.options
        parts = [f"topic IN ({', '.join(sql_literal(t) for t in self.topics)})"]
        if o.from_ms is not None:
            parts.append(f"\"date\" >= DATE '{_day(o.from_ms)}'")
            parts.append(f'"timestamp" >= {_timestamp(o.from_ms)}')
        if o.to_ms is not None:
            parts.append(f"\"date\" <= DATE '{_day(o.to_ms)}'")
            parts.append(f'"timestamp" <= {_timestamp(o.to_ms)}')
        if o.partitions:
            parts.append(f'"partition" IN ({", ".join(str(int(p)) for p in sorted(set(o.partitions)))})')
        if o.offsets:
            ranges = []
            for r in o.offsets:
                one = f'"partition" = {int(r.partition)} AND "offset" >= {int(r.start)}'
                ranges.append(f'({one} AND "offset" <= {int(r.end)})' if r.end is not None else f"({one})")
            parts.append(f"({' OR '.join(ranges)})")
        if o.key is not None:
            parts.append(f'"key" = {_blob(o.key)}')
        for (topic, partition), (last, extra) in sorted(resume.items()):
            done = [f'"offset" <= {int(last)}'] if last is not None else []
            if extra:
                done.append(f'"offset" IN ({", ".join(str(int(x)) for x in extra)})')
            if done:
                parts.append(
                    f'NOT (topic = {sql_literal(topic)} AND "partition" = {int(partition)} AND ({" OR ".join(done)}))'
                )
        return " AND ".join(parts)

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

    # -- reading -------------------------------------------------------------------------------

    def _source(self) -> tuple[str, list[str], str, str]:
        if self.where:
            return _SCOPE, [f"({self.where})"], "key_bytes", "value_bytes"
        return _ROWS, [], '"key"', '"value"'

    def plan(self, with_bytes: bool = False) -> list[PartitionPlan]:
        """Per source partition: count, offset and timestamp range (and key + value bytes when asked)."""
        scope, conds, k, v = self._source()
        size = f"sum({_BYTES.format(k=k, v=v)})" if with_bytes else "NULL"
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        sql = f"""
            SELECT topic, "partition", count(*), {size}, min("offset"), max("offset"),
                   min(epoch_ms("timestamp")), max(epoch_ms("timestamp"))
            FROM {scope} {where} GROUP BY ALL ORDER BY 1, 2"""
        rows = self._run(sql).fetchall()
        return [PartitionPlan(r[0], r[1], r[2], None if r[3] is None else int(r[3]), *r[4:]) for r in rows]

    def batches(self, rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """Selected rows, each source partition's in offset order, as columns topic, partition,
        offset, ts_ms, key, value, headers, source_cluster, size (key + value bytes).

        A topic is read in chunks of about ``chunk_rows`` selected rows, each sorted on its own by
        (partition, offset), so the sort's memory depends on ``chunk_rows``, not on the size of the
        window. Chunk k holds the k-th of ``chunks`` equal offset ranges of every partition of the
        topic: one scan per chunk reads the topic's files once, where a scan per partition read
        every file (which holds all of a topic's partitions) once per partition. Within a topic of
        up to ``chunk_rows`` selected rows the order is (partition, offset); beyond that the
        partitions' ranges take turns, each partition still in offset order.
        """
        scope, conds, k, v = self._source()
        columns = (
            f'topic, "partition", "offset", epoch_ms("timestamp") AS ts_ms, {k} AS "key", {v} AS "value", '
            f"headers, source_cluster, {_BYTES.format(k=k, v=v)} AS size"
        )
        topics: dict[str, list[PartitionPlan]] = {}
        for part in self.plan():
            topics.setdefault(part.topic, []).append(part)
        for topic, parts in topics.items():
            chunks = max(1, -(-sum(p.records for p in parts) // self.options.chunk_rows))
            spans = [-(-(p.last_offset - p.first_offset + 1) // chunks) for p in parts]
            for chunk in range(chunks):
                ranges = []
                for p, span in zip(parts, spans, strict=True):
                    low = p.first_offset + chunk * span
                    if low <= p.last_offset:
                        high = min(low + span - 1, p.last_offset)
                        ranges.append(
                            f'("partition" = {int(p.partition)} AND "offset" BETWEEN {int(low)} AND {int(high)})'
                        )
                if not ranges:
                    continue
                where = [f"topic = {sql_literal(topic)}", f"({' OR '.join(ranges)})", *conds]
                sql = f'SELECT {columns} FROM {scope} WHERE {" AND ".join(where)} ORDER BY "partition", "offset"'
                yield from self._run(sql).to_arrow_reader(rows or self.options.batch_rows)

    def rows_after(self, source: tuple[str, int], limit: int) -> list[dict]:
        """The next ``limit`` selected rows of one source partition, in offset order, as Python values."""
        scope, conds, k, v = self._source()
        where = [f"topic = {sql_literal(source[0])}", f'"partition" = {int(source[1])}', *conds]
        sql = (
            f'SELECT topic, "partition", "offset", epoch_ms("timestamp") AS ts_ms, {k} AS "key", {v} AS "value", '
            f'headers, source_cluster FROM {scope} WHERE {" AND ".join(where)} ORDER BY "offset" LIMIT {int(limit)}'
        )
        return self._run(sql).to_arrow_table().to_pylist()

    def prefetched(self, depth: int = 2) -> Iterator[pa.RecordBatch]:
        """``batches()`` read ahead on a thread: DuckDB and Arrow build the next batches (without the
        GIL) while the caller produces the current one. Memory: at most ``depth`` batches waiting."""
        reader = self.batches()
        q: queue.Queue = queue.Queue(maxsize=depth)
        done = threading.Event()

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
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise KbakError(f"reading the archive failed: {first_line(item)}") from None
                yield item
        finally:
            done.set()
            thread.join(timeout=10)

    def _run(self, sql: str) -> duckdb.DuckDBPyConnection:
        try:
            return self.con.execute(sql)
        except duckdb.Error as exc:
            raise KbakError(f"reading the archive failed: {first_line(exc)}") from None

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()


def _archived_partitions(actions: pa.Table) -> dict[str, int]:
    """Per archived topic, the partition count the archive implies (highest partition seen + 1)."""
    if actions.num_rows == 0:
        return {}
    agg = actions.group_by("partition.topic").aggregate([("max.partition", "max")])
    return {r["partition.topic"]: (r["max.partition_max"] or 0) + 1 for r in agg.to_pylist()}


def _day(ms: int):
    return (EPOCH + timedelta(milliseconds=ms)).date()


def _timestamp(ms: int) -> str:
    stamp = EPOCH + timedelta(milliseconds=ms)
    return f"TIMESTAMPTZ '{stamp.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


def _blob(value: bytes) -> str:
    return "'" + "".join(f"\\x{b:02X}" for b in value) + "'::BLOB"
