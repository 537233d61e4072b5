"""kbak: a Parquet/Delta Lake archive for Kafka, byte for byte, provable, answerable with SQL.

This module is the front door of the Python API; the CLI, the notebooks and the tests use the same
functions. A notebook session is typically::

    from pipeline import Lake, connect, run_query, validate
    lake = Lake.at("s3://audit-bucket/kafka")
    con = connect(lake, as_of="2024-12-01")
    rows = run_query(con, "customer_activity", {"customer": "customer-0042", ...}).to_arrow_table()
    assert validate(lake, deep=True).valid

Names are imported on first use (PEP 562 ``__getattr__``): each job pulls in a heavy stack (deltalake,
DuckDB, librdkafka), and ``kbak query`` should not pay for the Kafka client, nor ``kbak ingest`` for DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # where a lake lives, and errors
    "Lake": "pipeline.core.storage",
    "S3Settings": "pipeline.core.storage",
    "KbakError": "pipeline.core.errors",
    "UsageError": "pipeline.core.errors",
    "NotAnArchiveError": "pipeline.core.errors",
    "StorageError": "pipeline.core.errors",
    "CommitConflictError": "pipeline.core.errors",
    "Interrupted": "pipeline.core.errors",
    # ingest
    "ingest": "pipeline.ingest",
    "IngestOptions": "pipeline.ingest",
    "IngestSummary": "pipeline.ingest",
    # replay
    "replay": "pipeline.replay",
    "ReplayOptions": "pipeline.replay",
    "ReplaySummary": "pipeline.replay",
    # audit SQL
    "connect": "pipeline.query.engine",
    "run_query": "pipeline.query.named",
    "load_queries": "pipeline.query.named",
    "export_evidence": "pipeline.query.discovery",
    "custody_summary": "pipeline.query.discovery",
    "table_state": "pipeline.query.engine",
    # custody
    "validate": "pipeline.custody.validate",
    "ValidationReport": "pipeline.custody.validate",
    "history": "pipeline.custody.history",
    "describe": "pipeline.custody.history",
    # erasure and case holds
    "erase": "pipeline.erasure",
    "erase_status": "pipeline.erasure",
    "open_case": "pipeline.custody.cases",
    "release_case": "pipeline.custody.cases",
    "open_cases": "pipeline.custody.cases",
}
__all__ = [
    "CommitConflictError",
    "Interrupted",
    "NotAnArchiveError",
    "StorageError",
    "UsageError",
    "IngestOptions",
    "IngestSummary",
    "KbakError",
    "Lake",
    "ReplayOptions",
    "ReplaySummary",
    "S3Settings",
    "ValidationReport",
    "__version__",
    "connect",
    "custody_summary",
    "describe",
    "erase",
    "erase_status",
    "export_evidence",
    "history",
    "ingest",
    "load_queries",
    "open_case",
    "open_cases",
    "release_case",
    "replay",
    "run_query",
    "table_state",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from pipeline.core.errors import (
        CommitConflictError,
        Interrupted,
        KbakError,
        NotAnArchiveError,
        StorageError,
        UsageError,
    )
    from pipeline.core.storage import Lake, S3Settings
    from pipeline.custody.cases import open_case, open_cases, release_case
    from pipeline.custody.history import describe, history
    from pipeline.custody.validate import ValidationReport, validate
    from pipeline.erasure import erase, erase_status
    from pipeline.ingest import IngestOptions, IngestSummary, ingest
    from pipeline.query.discovery import custody_summary, export_evidence
    from pipeline.query.engine import connect, table_state
    from pipeline.query.named import load_queries, run_query
    from pipeline.replay import ReplayOptions, ReplaySummary, replay
