"""Every check ``kbak validate`` makes: one enum member each, carrying what it verifies.

A new check is one member here (name, description, and whether it is deep-only or a warning);
``validate`` raises findings by member, and the docs' check table is ``checks_markdown()`` (a unit
test keeps the two equal), so names, code and docs cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class Check(StrEnum):
    """A validation check; its value is the name findings and the docs use."""

    description: str
    deep: bool
    warning: bool

    def __new__(cls, name: str, description: str, deep: bool = False, warning: bool = False) -> Check:
        member = str.__new__(cls, name)
        member._value_ = name
        member.description = description
        member.deep = deep
        member.warning = warning
        return member

    # -- the chain (shallow) --
    DELTA_LOG_READABLE = (
        "delta-log-readable",
        "the Delta table opens and its current snapshot loads",
    )
    DELTA_LOG_PRESENT = (
        "delta-log-present",
        "every version from the oldest kept to the newest has its log entry (an entry expired behind a "
        "checkpoint is a warning)",
    )
    DELTA_LOG_PARSEABLE = (
        "delta-log-parseable",
        "each Delta log entry is complete newline-delimited JSON (a truncated or corrupt entry is named "
        "here, not taken for a foreign commit)",
    )
    MANIFEST_PRESENT = (
        "manifest-present",
        "every version has its sealed manifest (unsealed with an intact staged body: warning)",
    )
    MANIFEST_FORMAT = (
        "manifest-format",
        "each manifest is canonical JSON of kbak's format naming its own version",
    )
    MANIFEST_BODY_DIGEST = (
        "manifest-body-digest",
        "each manifest body hashes to its `body_sha256` and to the digest in the Delta commit info; every "
        "kbak ingest commit carries such a digest",
    )
    DELTA_LOG_DIGEST = (
        "delta-log-digest",
        "each Delta log entry hashes to the digest its manifest recorded",
    )
    CHECKPOINT_DIGEST = (
        "checkpoint-digest",
        "each checkpoint a manifest recorded still hashes to that digest (or a vacuum recorded deleting it: "
        "superseded checkpoints go, the log entries stay)",
    )
    CHAIN_LINK = (
        "chain-link",
        "each manifest's `previous_manifest_sha256` is the digest of the previous manifest (the finding "
        "names the previous manifest, the one that changed)",
    )
    # -- the files (shallow) --
    FILE_IN_MANIFEST = (
        "file-in-manifest",
        "each file the Delta snapshot references was added by a manifest and not removed since",
    )
    SNAPSHOT_MATCHES_MANIFESTS = (
        "snapshot-matches-manifests",
        "each file the manifests say is live is referenced by the Delta snapshot",
    )
    FILE_PRESENT = (
        "file-present",
        "each referenced file exists (with `--deep`, the offsets a missing file held, from its manifest, "
        "are listed as lost gaps)",
    )
    FILE_SIZE = (
        "file-size",
        "each file's size equals the size in the Delta log and in its manifest",
    )
    ANCHOR = (
        "anchor",
        "each `--anchor VERSION=SHA256` (a chain head recorded outside the lake, e.g. in last month's "
        "report) still names that version's manifest",
    )
    # -- the files (deep) --
    FILE_SHA256 = ("file-sha256", "each file's SHA-256 equals its manifest's", True)
    PARQUET_READABLE = ("parquet-readable", "each file decodes fully as Parquet (every page of every column)", True)
    PARQUET_SCHEMA = ("parquet-schema", "each file has kbak's record schema", True)
    ROW_COUNT = ("row-count", "each file's rows equal its manifest's and its Delta statistics' record counts", True)
    OFFSET_ORDER = (
        "offset-order",
        "offsets increase strictly within each partition of a file, and each appending commit's offsets "
        "come after every earlier commit's (rewrites such as erasure or compaction may re-add old offsets)",
        True,
    )
    PARTITION_DATE = (
        "partition-date",
        "every record of a file falls on the UTC day of the file's `date` partition (a record under the "
        "wrong date is invisible to date-pruned queries and replays)",
        True,
    )
    DUPLICATE_OFFSET = (
        "duplicate-offset",
        "no (topic, partition, offset) is archived twice, anywhere; names every file holding it",
        True,
    )
    MANIFEST_RANGES = (
        "manifest-ranges",
        "each commit's per-partition records, offset and timestamp ranges match what its files hold",
        True,
    )
    OFFSET_GAP = (
        "offset-gap",
        "offset holes (from offset 0) no commit recorded: transaction markers and compaction legitimately make "
        "them, so they are listed, not failures; holes ingest recorded as `deleted_before_archive`, and those "
        "erasure and retention recorded (`removed_offsets`, reasons `erased` / `retention`), are listed as "
        "recorded with their reason; the offsets a missing data file held (per its commit's manifest) are "
        "listed as `lost`, as errors",
        True,
        True,
    )
    # -- rewrites (compaction, retention, erasure) --
    REMOVED_FILE_DIGEST = (
        "removed-file-digest",
        "each removed file's SHA-256 in a removing manifest equals the one recorded when it was added",
    )
    CONTENT_DIGEST = (
        "content-digest",
        "each compaction's record digest equals that of the files it added and removed (those still in storage)",
        True,
    )
    REMOVED_FILE_GONE = (
        "removed-file-gone",
        "each file removed from the table and gone from storage was deleted by a `kbak vacuum` that recorded it",
        True,
    )
    # -- erasure --
    READSET_INDEX = (
        "readset-index",
        "the erasure readset index maps every original to the replacement its erase manifest names (see "
        "[erasure.md](erasure.md))",
    )
    SCRUBBED_REPLACEMENT = (
        "scrubbed-replacement",
        "each scrubbed replacement readers use exists and hashes to its manifest's SHA-256",
        True,
    )
    # -- kept schemas, case holds, encryption --
    SCHEMA_SHA256 = (
        "schema-sha256",
        "each kept schema document (`_kbak/schemas/<id>.json`, [schemas.md](schemas.md)) a manifest lists "
        "exists and hashes to the SHA-256 it recorded",
    )
    SCHEMA_LISTED = (
        "schema-listed",
        "each kept schema document is listed by a manifest (one written by a run killed before its commit is "
        "listed by the next run that needs it)",
        False,
        True,
    )
    CASE_STATE = (
        "case-state",
        "each case document under _kbak/cases/ says what the chain's latest case-hold/-release recorded",
    )
    ENCRYPTION = (
        "encryption",
        "(S3 with --sse/KBAK_SSE) every object carries the lake's configured server-side encryption",
        False,
        True,
    )
    # -- warnings --
    FOREIGN_COMMIT = ("foreign-commit", "versions not written by kbak", False, True)
    ORPHAN_STAGED_BODY = (
        "orphan-staged-body",
        "staged manifest bodies no commit points at: the body of a commit that never happened (a process "
        "stopped before committing; a writer that loses a commit race removes its own); harmless, removed by "
        "`validate --repair` once older than an hour",
        False,
        True,
    )

    @property
    def qualifier(self) -> str:
        """``(deep)``, ``(warning)``, ``(deep, warning)`` or nothing."""
        tags = [t for t, on in (("deep", self.deep), ("warning", self.warning)) if on]
        return f"({', '.join(tags)})" if tags else ""


def checks_markdown() -> str:
    """The docs' table of checks (a unit test compares it with the docs)."""
    lines = ["| check | verifies |", "|---|---|"]
    for c in Check:
        q = f"*{c.qualifier}* " if c.qualifier else ""
        lines.append(f"| `{c.value}` | {q}{c.description} |")
    return "\n".join(lines) + "\n"
