"""An order-independent digest of archived records: proof that a rewrite (compaction) kept every record.

Each record (topic, partition, offset, timestamp, key, value, headers) is encoded unambiguously (every
byte string hex-encoded, fields separated by characters hex never uses) and hashed with SHA-256; the
digest is the record count and the sum of those hashes modulo 2**256. A sum does not depend on the order
of records or on how they are split into files, and digests of parts add up to the digest of the whole,
so a compaction's before and after can be computed file by file. DuckDB hashes the rows (vectorised).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

ALGORITHM = "kbak-records-sum-sha256/1"
_MOD = 1 << 256

_SQL = """
SELECT count(*) AS n,
       coalesce(sum(('0x' || substr(h, 1, 16))::UBIGINT), 0)::VARCHAR AS l0,
       coalesce(sum(('0x' || substr(h, 17, 16))::UBIGINT), 0)::VARCHAR AS l1,
       coalesce(sum(('0x' || substr(h, 33, 16))::UBIGINT), 0)::VARCHAR AS l2,
       coalesce(sum(('0x' || substr(h, 49, 16))::UBIGINT), 0)::VARCHAR AS l3
FROM (
    SELECT sha256(concat_ws('|',
        hex($topic), "partition"::VARCHAR, "offset"::VARCHAR, epoch_us("timestamp")::VARCHAR,
        coalesce(hex("key"), '-'), coalesce(hex("value"), '-'),
        array_to_string(list_transform("headers", x -> hex(x."key") || ':' || coalesce(hex(x."value"), '-')), ',')
    )) AS h
    FROM rows
)
"""


@dataclass(frozen=True)
class RecordDigest:
    """Record count and the sum of the records' SHA-256 values (mod 2**256)."""

    records: int = 0
    total: int = 0

    def __add__(self, other: RecordDigest) -> RecordDigest:
        return RecordDigest(self.records + other.records, (self.total + other.total) % _MOD)

    @property
    def hex(self) -> str:
        return f"{self.total:064x}"

    def as_dict(self) -> dict:
        return {"algorithm": ALGORITHM, "records": self.records, "sum_sha256": self.hex}

    @classmethod
    def from_dict(cls, d: dict) -> RecordDigest:
        return cls(int(d["records"]), int(d["sum_sha256"], 16))


def record_digest(rows: pa.Table, topic: str) -> RecordDigest:
    """The digest of ``rows`` (a data file's columns: the file schema, or the record schema) of ``topic``."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("rows", rows.select(["partition", "offset", "timestamp", "key", "value", "headers"]))
        n, *limbs = con.execute(_SQL, {"topic": topic}).fetchone()
    finally:
        con.close()
    total = sum(int(limb) << (64 * (3 - i)) for i, limb in enumerate(limbs)) % _MOD
    return RecordDigest(int(n), total)


def combine(digests: Iterable[RecordDigest]) -> RecordDigest:
    out = RecordDigest()
    for d in digests:
        out = out + d
    return out
