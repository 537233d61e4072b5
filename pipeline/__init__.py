"""kbak: a Parquet/Delta Lake archive for Kafka.

The public Python API (the CLI is a thin layer over it; notebooks and tests use it too).
"""

__version__ = "0.1.0"
