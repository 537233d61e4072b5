"""Ingest: Kafka records into the archive, exactly once (batching, Parquet files, the commit path, the loop)."""

from pipeline.ingest.options import IngestOptions, default_group_id
from pipeline.ingest.run import ingest
from pipeline.ingest.summary import IngestSummary

__all__ = ["IngestOptions", "IngestSummary", "default_group_id", "ingest"]
