"""The committer: writes and commits flushes in order, off the consuming thread.

Two threads, a stage each: ``kbak-encoder`` writes a flush's Parquet files (encoding and upload,
mostly outside the GIL) while ``kbak-committer`` commits the flush before it (fence, manifest,
Delta commit, seal: mostly waiting on storage). Both overlap with the main thread's consuming.
Queues of one flush between the stages bound memory. Files written ahead are committed only if the
flush's fences still hold when its turn comes (``commit_records``); otherwise its rows are written
again and the early files are orphans, which ``kbak vacuum`` deletes.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.core.schema import TP
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.ingest.appender import LogAppender
from pipeline.ingest.commit import CommitResult, commit_records, prepare_files
from pipeline.ingest.writer import DataFile


@dataclass
class Flush:
    """One flush: its rows, the fence per partition, and the generations it was cut at."""

    table: pa.Table
    expected: dict[TP, int | None]
    generation: dict[TP, int]
    gaps: list[dict]
    schemas: list[dict] = field(default_factory=list)  # kept schema documents this commit lists
    ranges: list[dict] = field(default_factory=list)  # partition_ranges(table), computed once


class Committer(threading.Thread):
    """Commits each flush put on ``jobs``; puts ``(flush, result or exception)`` on ``results``."""

    def __init__(
        self,
        lake: Lake,
        *,
        source_cluster: str,
        backup_id: str,
        compression_level: int,
        target_file_size: int,
        object_lock_days: int | None,
    ) -> None:
        super().__init__(name="kbak-committer", daemon=True)
        self.lake = lake
        self.source_cluster = source_cluster
        self.backup_id = backup_id
        self.compression_level = compression_level
        self.target_file_size = target_file_size
        self.object_lock_days = object_lock_days
        self.log: LogAppender | None = None  # this worker's appender to the Delta log, kept across commits
        self.jobs: queue.Queue[Flush | None] = queue.Queue(maxsize=1)  # task_done once committed
        self.results: queue.Queue[tuple[Flush, CommitResult | BaseException]] = queue.Queue()
        self._written: queue.Queue[tuple[Flush | None, list[DataFile] | BaseException]] = queue.Queue(maxsize=1)
        self._encoder = threading.Thread(target=self._encode_loop, name="kbak-encoder", daemon=True)

    def start(self) -> None:
        self._encoder.start()
        super().start()

    def _encode_loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                self._written.put((None, []))
                return
            try:
                out: list[DataFile] | BaseException = prepare_files(
                    self.lake, job.table, self.compression_level, self.target_file_size
                )
            except BaseException as exc:  # reported by the commit stage, in the flush's turn
                out = exc
            self._written.put((job, out))

    def run(self) -> None:
        dt = None
        while True:
            job, written = self._written.get()
            try:
                if job is None:
                    return
                try:
                    if isinstance(written, BaseException):
                        raise written
                    # Opened here, so a failure is reported like any commit failure (the thread
                    # must never die silently: the main thread would then wait on it forever).
                    dt = dt or open_table(self.lake)
                    self.log = self.log or LogAppender.open(self.lake, dt)
                    res: CommitResult | BaseException = self._commit(dt, job, written)
                except BaseException as exc:  # reported to the main thread, which stops the run
                    res = exc
                self.results.put((job, res))
            finally:
                self.jobs.task_done()

    def _commit(self, dt, job: Flush, files: list[DataFile]) -> CommitResult:
        res = commit_records(
            self.lake,
            dt,
            job.table,
            job.expected,
            source_cluster=self.source_cluster,
            backup_id=self.backup_id,
            gaps=job.gaps,
            schemas=job.schemas,
            compression_level=self.compression_level,
            target_file_size=self.target_file_size,
            files=files,
            log=self.log,
        )
        if self.object_lock_days and res.version is not None:
            from pipeline.custody.hold import lock_commit

            lock_commit(self.lake, res.version, [f.path for f in res.files], self.object_lock_days)
        return res
