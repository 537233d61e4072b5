"""The access log: one JSON record per read of the archive ("audit all access").

``kbak query``, ``kbak replay``, ``kbak describe`` and the Python API's ``connect`` append a record
when a log is configured (``--access-log URI`` or ``KBAK_ACCESS_LOG``): a local directory or an
``s3://bucket/prefix``, typically a bucket of its own, since auditors' credentials should not
write to the archive. Each record is one object, ``YYYY/MM/DD/<time>-<uuid>.jsonl`` under the
prefix, so concurrent readers never contend and S3 needs no append.

A record says when, who (user@host), the command, the lake, the named query or a SHA-256 of
ad-hoc SQL, each parameter's name with an HMAC-SHA-256 of its value (parameters are often personal
data), the table version read and the rows returned. The HMAC key is ``KBAK_ACCESS_LOG_KEY`` when
set, else ``_key`` beside the records (created on first use): whoever holds it and a value can
show that value was asked for; the log alone does not reveal it.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.core.errors import KbakError, first_line
from pipeline.core.secrets import remember
from pipeline.core.storage import Lake

ENV = "KBAK_ACCESS_LOG"
KEY_ENV = "KBAK_ACCESS_LOG_KEY"
KEY_FILE = "_key"


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers): the uid says who
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def sql_digest(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


@dataclass(frozen=True)
class AccessLog:
    location: Lake

    @classmethod
    def configured(cls, uri: str | None = None) -> AccessLog | None:
        """The log named by ``uri`` or ``KBAK_ACCESS_LOG``; None when neither is set."""
        uri = uri or os.environ.get(ENV)
        return cls(Lake.at(uri)) if uri else None

    def key(self) -> bytes:
        env = os.environ.get(KEY_ENV)
        if env:
            remember(env)
            return env.encode()
        if self.location.exists(KEY_FILE):
            return bytes.fromhex(self.location.read_bytes(KEY_FILE).decode().strip())
        fresh = secrets.token_hex(32)
        self.location.write_bytes(KEY_FILE, fresh.encode() + b"\n")
        return bytes.fromhex(fresh)

    def param_hashes(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        """Each parameter's name with the HMAC-SHA-256 (hex) of its value as text."""
        if not params:
            return {}
        key = self.key()
        return {
            name: hmac.new(key, f"{name}\0{value}".encode(), hashlib.sha256).hexdigest()
            for name, value in sorted(params.items())
        }

    def append(
        self,
        command: str,
        lake: Lake | str,
        *,
        query: str | None = None,
        sql: str | None = None,
        params: Mapping[str, Any] | None = None,
        table_version: int | None = None,
        rows: int | None = None,
        **extra: Any,
    ) -> dict:
        """Write one record; returns it. A log that cannot be written is an error, not a silent gap."""
        now = datetime.now(UTC)
        record = {
            "at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "who": who(),
            "command": command,
            "lake": lake.uri if isinstance(lake, Lake) else str(lake),
            "query": query,
            "sql_sha256": sql_digest(sql) if sql is not None and query is None else None,
            "params": self.param_hashes(params),
            "table_version": table_version,
            "rows": rows,
            **extra,
        }
        name = f"{now:%Y/%m/%d}/{now:%H%M%S%f}-{uuid.uuid4().hex[:12]}.jsonl"
        try:
            self.location.write_bytes(name, (json.dumps(record, sort_keys=True) + "\n").encode())
        except Exception as exc:
            raise KbakError(f"cannot write the access log at {self.location.uri}: {first_line(exc)}") from None
        return record

    def read(self, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
        """Records with ``start <= at < end`` (either bound optional), oldest first."""
        out = []
        for rel in self.location.list_files():
            if not rel.endswith(".jsonl"):
                continue
            for line in self.location.read_bytes(rel).decode().splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                at = datetime.fromisoformat(rec["at"].replace("Z", "+00:00"))
                if (start is None or at >= start) and (end is None or at < end):
                    out.append(rec)
        return sorted(out, key=lambda r: r["at"])


def log_access(command: str, lake: Lake | str, uri: str | None = None, **fields: Any) -> dict | None:
    """Append a record to the configured log (``uri`` or ``KBAK_ACCESS_LOG``), if any."""
    log = AccessLog.configured(uri)
    return log.append(command, lake, **fields) if log else None


def summarise(records: list[dict]) -> dict:
    """Counts per command and per user, rows returned, and the named queries used: for reports."""
    by_command: dict[str, int] = {}
    by_user: dict[str, int] = {}
    queries: dict[str, int] = {}
    for r in records:
        by_command[r["command"]] = by_command.get(r["command"], 0) + 1
        by_user[r["who"]] = by_user.get(r["who"], 0) + 1
        if r.get("query"):
            queries[r["query"]] = queries.get(r["query"], 0) + 1
    return {
        "accesses": len(records),
        "by_command": by_command,
        "by_user": by_user,
        "named_queries": queries,
        "ad_hoc_sql": sum(1 for r in records if r.get("sql_sha256")),
        "rows_returned": sum(r.get("rows") or 0 for r in records),
    }
