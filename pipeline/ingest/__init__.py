"""Ingest: Kafka records into the archive, exactly once (batching, Parquet files, the commit path, the loop)."""

from pipeline.ingest.run import IngestOptions, IngestSummary, default_group_id, ingest

__all__ = ["IngestOptions", "IngestSummary", "default_group_id", "ingest"]
