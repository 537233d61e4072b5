"""The SQL engine over the archive: a DuckDB connection with a ``records`` view of the table.

Shared by ``kbak query``, ``kbak replay --where`` and the notebooks, so one predicate means the
same thing everywhere.
"""

from __future__ import annotations

import duckdb

from pipeline.storage import Lake
from pipeline.table import open_table


def connect(lake: Lake, as_of: int | str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose ``records`` view is the archive (as of a version or time)."""
    dt = open_table(lake, as_of)
    con = duckdb.connect()
    dataset = dt.to_pyarrow_dataset()
    con.register("_kbak_records_dataset", dataset)
    con.execute("CREATE VIEW records AS SELECT * FROM _kbak_records_dataset")
    return con
