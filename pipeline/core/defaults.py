"""Every tunable default, written once: the ingest options, the writer, compaction and the CLI's help
all read them from here (this module imports nothing, so the CLI can show them at no cost)."""

COMPRESSION_LEVEL = 3  # zstd level of the Parquet files
FLUSH_RECORDS = 500_000  # commit after this many records ...
FLUSH_BYTES = 16 << 20  # ... or this much Arrow data ...
FLUSH_SECONDS = 30.0  # ... or this long since the first buffered record
TARGET_FILE_SIZE = 128 << 20  # a Parquet file's size, at most (ingest and compaction)
ORPHAN_AGE_S = 3600  # a staged manifest body no commit names is an orphan only this long after it was written
# A data file nothing names is an orphan (kbak vacuum) only this long after it was written: a compaction of a
# large day writes its files for minutes before its commit names them.
ORPHAN_FILE_AGE_S = 24 * 3600
SNAPSHOT_TIMEOUT_S = 60.0  # --once: how long to wait for partitions other group members hold
UNASSIGNED_WARNING_S = 60.0  # continuous: warn when the group gives this worker no partition this long
CONNECT_TIMEOUT_S = 10.0  # Kafka must answer (TLS, SASL, metadata) within this, or the run fails
TOPIC_REFRESH_S = 10.0  # how often continuous ingest looks for new matching topics
MAINTENANCE_S = 300.0  # how often --compact/--retention-apply look for work
