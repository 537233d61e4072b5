"""What a ``kbak query`` process loads: a local query of an archive kbak created never imports pyarrow.

pyarrow (with numpy) takes ~55 ms to import, a sixth of a small query's whole run. The query reads the
table through deltalake and DuckDB, neither of which needs it; kbak's own reads of a local lake go to
the OS, and opening the table checks its schema against the Delta form of ``RECORD_SCHEMA`` first.
"""

from __future__ import annotations

import json
import subprocess
import sys

from deltalake import DeltaTable
from support.custody_lakes import record_rows as rows

from pipeline.core.schema import PARTITION_COLUMNS
from pipeline.core.storage import Lake
from pipeline.core.table import ARCHIVE_DELTA_SCHEMA, ARCHIVE_PARTITIONS
from pipeline.ingest.commit import commit_records, ensure_table

_LOADED = """
import sys
sys.argv = ["kbak", "query", "--lake", sys.argv[1], "--sql", "SELECT count(*) AS n FROM records", "-f", "json"]
from pipeline.cli import app
try:
    app()
except SystemExit as exc:
    assert not exc.code, exc.code
print(sorted({m.split(".")[0] for m in sys.modules} & {"pyarrow", "numpy", "pandas"}), file=sys.stderr)
"""


def test_the_schema_open_table_checks_first_is_what_deltalake_states_for_record_schema(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    ensure_table(lake)
    dt = DeltaTable(lake.uri)
    assert json.loads(dt.schema().to_json()) == ARCHIVE_DELTA_SCHEMA
    assert dt.metadata().partition_columns == ARCHIVE_PARTITIONS == PARTITION_COLUMNS


def test_a_local_query_never_loads_pyarrow(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    dt = ensure_table(lake)
    commit_records(lake, dt, rows("t", 0, 0, 5), {("t", 0): None}, source_cluster="c", backup_id="a")
    proc = subprocess.run([sys.executable, "-c", _LOADED, lake.uri], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 5}]
    assert proc.stderr.splitlines()[-1] == "[]", proc.stderr  # the libraries loaded that it should not need
