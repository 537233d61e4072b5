"""Pure helpers of the query engine."""

from __future__ import annotations

from types import SimpleNamespace

from pipeline.query.decoding import uses_decoding
from pipeline.query.engine import (
    PARQUET_READER_MAX_FILES,
    PARQUET_READER_MAX_FILES_S3,
    default_reader,
    uses_recorded_gaps,
)


def test_recorded_gaps_view_is_made_only_for_sql_that_names_it():
    assert uses_recorded_gaps("SELECT * FROM records r LEFT JOIN kbak_recorded_gaps g USING (topic)")
    assert uses_recorded_gaps('select * from "KBAK_RECORDED_GAPS"')  # identifiers are case-insensitive
    assert not uses_recorded_gaps('SELECT "offset" FROM records WHERE "partition" = 1')


class _Table:
    """The two things ``default_reader`` asks of a DeltaTable: its protocol and its live files."""

    def __init__(self, files: int, reader_version: int = 1, features: list[str] | None = None) -> None:
        self._files = files
        self._protocol = SimpleNamespace(min_reader_version=reader_version, reader_features=features)

    def protocol(self):
        return self._protocol

    def file_uris(self) -> list[str]:
        return [f"/lake/topic=t/date=2024-01-01/part-{i}.parquet" for i in range(self._files)]


def test_default_reader_reads_few_files_with_parquet_and_many_with_delta_scan():
    assert default_reader(_Table(0)) == "parquet"
    assert default_reader(_Table(PARQUET_READER_MAX_FILES)) == "parquet"
    assert default_reader(_Table(PARQUET_READER_MAX_FILES + 1)) == "delta_scan"
    s3 = PARQUET_READER_MAX_FILES_S3  # on S3 each file opened costs requests
    assert default_reader(_Table(s3), max_files=s3) == "parquet"
    assert default_reader(_Table(s3 + 1), max_files=s3) == "delta_scan"
    # An older version's readset (after erasure or vacuum) is an explicit list already.
    assert default_reader(_Table(PARQUET_READER_MAX_FILES + 1), uris=["/lake/x.parquet"]) == "parquet"


def test_default_reader_leaves_tables_a_parquet_reader_would_misread_to_delta_scan():
    # Deletion vectors hide rows a plain Parquet reader would show; column mapping renames columns.
    assert default_reader(_Table(1, reader_version=3, features=["deletionVectors"])) == "delta_scan"
    assert default_reader(_Table(1, reader_version=2)) == "delta_scan"
    assert default_reader(_Table(1, reader_version=3, features=["deletionVectors"]), uris=[]) == "delta_scan"


def test_decoding_functions_are_registered_for_sql_that_can_call_them():
    assert uses_decoding("SELECT decoded(value) FROM records")
    assert uses_decoding("select FIELD(value, 'customer_id') from records")  # case-insensitive
    assert uses_decoding("SELECT shown(value) FROM records", decode=True)  # with --decode, shown() decodes
    assert not uses_decoding("SELECT shown(value) FROM records")  # without, it prints bytes as text
    assert uses_decoding("SELECT undecodable_reason(value), kbak_decode(value) FROM records")
    assert uses_decoding("SELECT json_field(value, 'a') FROM records")  # conservative: costs time, never a result
    assert not uses_decoding("SELECT \"offset\", key FROM records WHERE key = 'customer-00042'::BLOB")
    assert not uses_decoding("SELECT schema_id(value), is_framed(value), as_text(key) FROM records")
