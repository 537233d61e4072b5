"""Pure helpers of the query engine."""

from __future__ import annotations

from pipeline.query.engine import uses_recorded_gaps


def test_recorded_gaps_view_is_made_only_for_sql_that_names_it():
    assert uses_recorded_gaps("SELECT * FROM records r LEFT JOIN kbak_recorded_gaps g USING (topic)")
    assert uses_recorded_gaps('select * from "KBAK_RECORDED_GAPS"')  # identifiers are case-insensitive
    assert not uses_recorded_gaps('SELECT "offset" FROM records WHERE "partition" = 1')
