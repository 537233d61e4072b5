"""One Delta commit for each of kbak's own table operations (erase, retention, compact, vacuum, case holds,
policies), with its custody manifest staged before and sealed after, exactly as an ingest commit is.

Ingest's exactly-once state (the per-partition application transactions) is never touched: a commit
without ``txn`` actions leaves every application's version as it was.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
import time
from collections.abc import Callable, Sequence

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from pipeline import __version__
from pipeline.core.errors import CommitConflictError, KbakError, StorageError, first_line
from pipeline.core.schema import PARTITION_COLUMNS, RECORD_SCHEMA
from pipeline.core.storage import Lake
from pipeline.core.timefmt import now_iso
from pipeline.custody.manifest import BODY_DIGEST_KEY, InfoKey, checkpoint_path, log_path, seal, stage, staged_path

log = logging.getLogger("kbak.custody")


def created_by() -> str:
    """Who ran the operation, and with what, as the manifests record it: ``user@host kbak/<version>``."""
    return f"{getpass.getuser()}@{socket.gethostname()} kbak/{__version__}"


def remove_action(add: dict, now_ms: int | None = None) -> RemoveAction:
    """A remove action for a file of the current version, from a ``get_add_actions(flatten=True)`` row."""
    partition_values = {c: add[f"partition.{c}"] for c in PARTITION_COLUMNS if f"partition.{c}" in add}
    return RemoveAction(
        path=add["path"],
        data_change=True,
        deletion_timestamp=now_ms if now_ms is not None else int(time.time() * 1000),
        size=add["size_bytes"],
        partition_values={k: None if v is None else str(v) for k, v in partition_values.items()},
    )


def commit_operation(
    lake: Lake,
    dt: DeltaTable,
    operation: str,
    body: dict,
    *,
    add: Sequence[AddAction] = (),
    remove: Sequence[RemoveAction] = (),
    metadata: dict | None = None,
    properties: dict[str, str] | None = None,
    checkpoint: bool = False,
    max_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Commit ``add``/``remove`` (possibly none: a record-only commit) with ``body`` as its manifest body.

    ``body`` gets ``operation``, ``created_at`` and ``created_by``; it must never hold personal data
    (the custody chain is kept for the archive's lifetime). Returns the committed version, sealed.
    A conflicting concurrent commit (ingest appending meanwhile) is retried by delta-rs; a storage
    error is retried here with backoff, then raised as one line.

    ``properties``: table properties to set in the same commit (a metadata-only commit: no files).

    ``checkpoint``: also write a Delta checkpoint at the committed version (unless its post-commit hook
    just did), before sealing so the manifest records its digest. After a commit that removes many
    files (compaction), every reader would otherwise replay the log entries since the last checkpoint:
    the thousands of small files' adds in that checkpoint, then their removes.
    """
    if properties and (add or remove):
        raise ValueError("a commit sets table properties or changes files, not both")
    body = {"operation": operation, "created_at": now_iso(), "created_by": created_by(), **body}
    digest = stage(lake, body)
    meta = {
        InfoKey.OPERATION: operation,
        InfoKey.VERSION: __version__,
        InfoKey.CREATED_BY: created_by(),
        InfoKey.HOST: socket.gethostname(),
        **(metadata or {}),
        BODY_DIGEST_KEY: digest,
    }
    attempt = 0
    while True:
        attempt += 1
        read_version: int | None = None
        try:
            dt.update_incremental()
            read_version = dt.version()
            try:
                _check_still_live(dt, remove, operation)
            except ConcurrentRemoval:
                with contextlib.suppress(OSError):
                    lake.delete(staged_path(digest))  # never committed: no orphan body either
                raise
            commit = CommitProperties(custom_metadata=meta, max_commit_retries=10)
            if properties:
                dt.alter.set_table_properties(properties, raise_if_not_exists=False, commit_properties=commit)
            else:
                dt.create_write_transaction(
                    [*add, *remove],
                    mode="append",
                    schema=RECORD_SCHEMA,
                    partition_by=PARTITION_COLUMNS,
                    commit_properties=commit,
                )
        except (CommitFailedError, OSError) as exc:
            # An error may come after the commit landed (a post-commit hook, a lost response): retrying
            # then would commit the operation twice, so look for it in the log first.
            version = landed_version(lake, read_version, digest)
            if version is not None:
                break
            if attempt >= max_attempts:
                kind = CommitConflictError if isinstance(exc, CommitFailedError) else StorageError
                detail = first_line(exc)
                raise kind(f"{operation} commit to {lake.uri} failed after {attempt} attempts: {detail}") from None
            sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
            continue
        version = find_committed_version(lake, read_version, digest)
        break
    # The commit stands from here on: a failure below is reported, never retried as a second commit
    # (an unsealed version is sealed by the next commit, or by `kbak validate --repair`).
    if checkpoint:
        write_checkpoint(lake, dt, version)
    seal(lake, dt, head=version)
    return version


def landed_version(lake: Lake, read_version: int | None, digest: str | None) -> int | None:
    """The version our commit got, if it landed despite an error; None if it did not (or cannot tell)."""
    if read_version is None or digest is None:
        return None  # failed before committing
    try:
        return find_committed_version(lake, read_version, digest)
    except (KbakError, OSError):
        return None


def write_checkpoint(lake: Lake, dt: DeltaTable, version: int) -> None:
    """A checkpoint at ``version``, best effort: the commit has landed, so a failure here must not retry it.

    ``dt`` is brought to ``version`` forward from where it is when it can be (replaying the entries since),
    else loaded from the checkpoint before ``version``.
    """
    try:
        if not lake.exists(checkpoint_path(version)):
            if dt.version() < version:
                dt.update_incremental()
            if dt.version() != version:
                dt.load_as_version(version)
            dt.create_checkpoint()
    except Exception as exc:  # deltalake raises OSError and its own errors; readers just replay more log
        log.warning("no checkpoint at version %d of %s: %s", version, lake.uri, first_line(exc))


class ConcurrentRemoval(KbakError):
    """Nothing was committed: files this operation removes were removed by another commit first."""


def _check_still_live(dt: DeltaTable, remove: Sequence[RemoveAction], operation: str) -> None:
    """Refuse to remove a file another commit removed meanwhile (two compactions of the same day).

    delta-rs rejects a concurrent removal made after the version read here; this covers the ones made
    before it, since the caller chose its files: without it, both rewrites would land and every
    record of those files would be archived twice.
    """
    if not remove:
        return
    live = set(pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist())
    gone = [r.path for r in remove if r.path not in live]
    if gone:
        raise ConcurrentRemoval(
            f"{operation}: {len(gone)} of the files it removes were removed by another commit meanwhile "
            f"(e.g. {gone[0]}): nothing committed; run it again"
        )


def find_committed_version(lake: Lake, read_version: int, digest: str) -> int:
    """The version our commit got (others may have committed around it): found by its manifest digest.

    The log entries after ``read_version`` are read directly, one by one, until ours: the cost is the
    number of commits made meanwhile, not a reload of the table (which lists the whole log).
    """
    version = read_version + 1
    while lake.exists(log_path(version)):
        if digest.encode() in lake.read_bytes(log_path(version)):
            return version
        version += 1
    raise KbakError(f"committed to {lake.uri} but cannot find the commit (manifest {digest}) in the log")
