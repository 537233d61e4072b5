"""The ingest commit path: fence, write, stage the manifest, commit with offsets, seal.

Exactly-once rests on one rule: rows of a partition are committed only if the Delta log's
application transaction for that partition still says what this worker read before the rows
(``expected``). The commit is written straight to the log by ``LogAppender`` (see ingest/appender.py),
which reads every entry other writers committed since its last one before it fences, and creates the
next version's entry only if no other writer did: a writer that loses that race reads the winner's
entry and fences again. So two workers that both believe they own a partition (during a rebalance,
after a restart) can never both commit it. A table whose protocol asks for more than kbak writes is
committed through delta-rs instead, which fails a commit whose application transactions a concurrent
commit also set; the fence is then re-checked against the new table state before each retry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction

from pipeline import __version__, custody
from pipeline.core import defaults, profile
from pipeline.core.errors import CommitConflictError, KbakError, first_line
from pipeline.core.ranges import partition_ranges
from pipeline.core.schema import PARTITION_COLUMNS, RECORD_SCHEMA, TP
from pipeline.core.storage import Lake
from pipeline.core.table import FREQUENT_COMMIT_HOOKS, TABLE_CONFIGURATION, app_id, open_table
from pipeline.custody.manifest import InfoKey, Operation, ingest_body
from pipeline.custody.operation import created_by, find_committed_version, landed_version
from pipeline.ingest.appender import LogAppender, Unsupported
from pipeline.ingest.batch import without_partitions
from pipeline.ingest.writer import DataFile, write_files

# How many times in a row one commit may find its version taken by another writer before giving up
# (each loss costs reading the winner's entry; it takes many workers committing at once to lose often).
MAX_RACES = 100


@dataclass
class CommitResult:
    version: int | None
    files: list[DataFile]
    records: int
    bytes: int
    committed: dict[TP, int]  # last offset now in the table, per partition written
    rejected: dict[TP, int | None] = field(default_factory=dict)  # what the log says instead
    manifest_digest: str | None = None


def ensure_table(lake: Lake) -> DeltaTable:
    """Open the archive, creating it (version 0, with its configuration) if the location is empty.

    Each ingest calls it once its own checks passed (a refused Kafka setting leaves no lake behind),
    so ``--workers`` may race to create the table: the loser opens the one the winner created.
    """
    try:
        return open_table(lake)
    except KbakError as exc:
        if "no Delta table" not in str(exc):
            raise
    try:
        return _create(lake)
    except KbakError:
        try:
            return open_table(lake)  # created by a concurrent worker meanwhile
        except KbakError:
            pass
        raise


def _create(lake: Lake) -> DeltaTable:
    try:
        props = CommitProperties(custom_metadata={InfoKey.OPERATION: Operation.CREATE.value})
        DeltaTable.create(
            lake.uri,
            schema=RECORD_SCHEMA,
            partition_by=PARTITION_COLUMNS,
            mode="ignore",
            name="kbak_archive",
            description="Kafka records archived byte for byte by kbak",
            configuration=TABLE_CONFIGURATION,
            raise_if_key_not_exists=False,  # kbak.removedFileRetentionDuration is kbak's, not Delta's
            storage_options=lake.storage_options or None,
            commit_properties=props,
        )
    except OSError as exc:
        raise KbakError(f"cannot write to lake {lake.uri}: {first_line(exc)}") from None
    except Exception as exc:
        raise KbakError(f"cannot write to lake {lake.uri}: {first_line(exc)}") from None
    dt = open_table(lake)
    custody.seal(lake, dt)
    return dt


def commit_records(
    lake: Lake,
    dt: DeltaTable,
    table: pa.Table,
    expected: dict[TP, int | None],
    *,
    source_cluster: str,
    backup_id: str,
    gaps: list[dict] | None = None,
    schemas: list[dict] | None = None,
    compression_level: int = defaults.COMPRESSION_LEVEL,
    target_file_size: int = defaults.TARGET_FILE_SIZE,
    max_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    files: list[DataFile] | None = None,
    log: LogAppender | None = None,
) -> CommitResult:
    """Commit ``table``'s rows for the partitions whose fence holds; report the ones that moved.

    ``files``: ``table`` already written (``prepare_files``, ahead of the commit); used only if every
    fence holds, otherwise the remaining rows are written again (the early files become orphans).
    ``log``: the caller's ``LogAppender`` for this lake, kept across its commits (a worker's committer
    keeps one): it then reads only what other writers committed since. Without one, a new one
    starts from ``dt`` brought to the newest version, and ``dt`` is brought to the commit on return
    (as delta-rs's own commit leaves it), so a caller's next ``expected`` read from it is current.
    """
    rejected: dict[TP, int | None] = {}
    files = list(files or [])
    digest: str | None = None
    if log is None:
        dt.update_incremental()  # a one-off appender starts at the newest version, not where ``dt`` was left
    appender = log if log is not None else LogAppender.open(lake, dt)
    attempt = races = 0
    while True:
        attempt += 1
        digest = None
        read_version: int | None = None
        direct = appender is not None and appender.usable
        try:
            with profile.stage("fence"):
                moved = appender.fence(dt, expected, source_cluster) if direct else _fence(dt, expected, source_cluster)
            rejected.update(moved)
            if moved:
                table = without_partitions(table, moved)
                files = []  # rows changed: rewrite (old files stay orphaned, vacuum removes them)
            if table.num_rows == 0:
                return CommitResult(None, [], 0, 0, {}, rejected)
            if not files:
                files = prepare_files(lake, table, compression_level, target_file_size)
            with profile.stage("manifest"):
                ranges = partition_ranges(table)
                body = ingest_body(files, ranges, gaps or [], source_cluster, backup_id, created_by())
                if schemas:  # kept schema documents these records are the first to need (see ingest/schemas.py)
                    body.extra["schemas"] = schemas
                digest = custody.stage(lake, body)
            txns = [Transaction(app_id(source_cluster, r["topic"], r["partition"]), r["last_offset"]) for r in ranges]
            meta = {
                InfoKey.OPERATION: Operation.INGEST.value,
                InfoKey.BACKUP_ID: backup_id,
                InfoKey.SOURCE_CLUSTER: source_cluster,
                InfoKey.VERSION: __version__,
                InfoKey.CREATED_BY: created_by(),
                InfoKey.HOST: socket.gethostname(),
                InfoKey.RECORDS: table.num_rows,
                InfoKey.PARTITIONS: ranges,
                InfoKey.GAPS: gaps or [],
                InfoKey.MANIFEST_BODY_SHA256: digest,
            }
            _fault("before-commit")
            with profile.stage("delta commit"):
                if direct:
                    read_version = appender.version
                    version = appender.append(files, {t.app_id: t.version for t in txns}, meta)
                    if version is None:  # another writer took the version: read its entry, fence again
                        _unstage(lake, digest)
                        races, attempt = races + 1, attempt - 1
                        if races > MAX_RACES:
                            raise CommitConflictError(f"commit to {lake.uri} lost {races} races to other writers")
                        continue
                else:
                    read_version = dt.version()
                    dt.create_write_transaction(
                        [add_action(f) for f in files],
                        mode="append",
                        schema=RECORD_SCHEMA,
                        partition_by=PARTITION_COLUMNS,
                        commit_properties=CommitProperties(
                            custom_metadata=meta, app_transactions=txns, max_commit_retries=10
                        ),
                        post_commithook_properties=FREQUENT_COMMIT_HOOKS,
                    )
                    version = None
            _fault("after-commit")
            with profile.stage("seal"):
                if version is None:
                    version = find_committed_version(lake, read_version, digest)
                elif appender.checkpoint_due(version):
                    appender.write_checkpoint(version)  # before the seal, so the manifest records its digest
                custody.seal(lake, dt, head=version)
            break
        except Unsupported:
            continue  # the appender read an entry it cannot write after (nothing staged yet): delta-rs commits
        except CommitFailedError as exc:
            # A concurrent commit set one of our partitions' transactions: nothing was committed, so
            # the body staged for it names nothing; remove it, then loop to re-fence.
            _unstage(lake, digest)
            if attempt >= max_attempts:
                raise CommitConflictError(f"commit to {lake.uri} kept conflicting: {first_line(exc)}") from None
        except KbakError:
            raise
        except OSError as exc:
            # The commit may have landed before the error (sealing, a post-commit hook, a lost response):
            # a retry would then find this worker's own transactions moved and report its rows rejected.
            version = landed_version(lake, read_version, digest)
            if version is not None:
                custody.seal(lake, dt, head=version)  # raises if storage still fails: the commit stands
                break
            if attempt >= max_attempts:
                detail = " ".join(str(exc).split())[:300]  # the whole message, on one line
                raise KbakError(f"storage error committing to {lake.uri} after {attempt} attempts: {detail}") from None
            sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
    if direct and log is None:
        dt.update_incremental()  # a worker's committer (``log``) skips this: its appender knows
    return _committed(version, files, table, ranges, rejected, digest)


def _fence(dt: DeltaTable, expected: dict[TP, int | None], cluster: str) -> dict[TP, int | None]:
    """The delta-rs path's fence: the partitions whose transaction at the newest version is not ``expected``."""
    dt.update_incremental()
    have = {tp: dt.transaction_version(app_id(cluster, *tp)) for tp in expected}
    return {tp: v for tp, v in have.items() if v != expected[tp]}


def _committed(
    version: int, files: list[DataFile], table: pa.Table, ranges: list[dict], rejected: dict, digest: str
) -> CommitResult:
    committed = {(r["topic"], r["partition"]): r["last_offset"] for r in ranges}
    return CommitResult(version, files, table.num_rows, sum(f.size for f in files), committed, rejected, digest)


def prepare_files(lake: Lake, table: pa.Table, compression_level: int, target_file_size: int) -> list[DataFile]:
    """Write a flush's data files, not yet committed (no reader sees them until a commit names them)."""
    files = write_files(lake, table, compression_level, target_file_size)
    _fault("after-write")
    return files


def _unstage(lake: Lake, digest: str | None) -> None:
    """Remove a staged body no commit will name (a lost commit race; not a crash)."""
    if digest is None:
        return
    with contextlib.suppress(OSError):
        lake.delete(custody.manifest.staged_path(digest))


def _fault(point: str) -> None:
    """Crash-test hook: ``KBAK_FAULT=<point>`` SIGKILLs the process there (the kill-and-rerun tests)."""
    if os.environ.get("KBAK_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def add_action(f: DataFile) -> AddAction:
    """The Delta add action of a data file kbak wrote (ingest, compaction)."""
    return AddAction(f.path, f.size, f.partition_values, f.modification_time, True, f.stats)
