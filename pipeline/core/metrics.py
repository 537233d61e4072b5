"""Prometheus metrics for ingest, under kbak's names and the names the compliance docs query."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from pipeline.core.errors import KbakError, UsageError


class IngestMetrics:
    """One registry per run, so tests and notebooks can run several ingests in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("kbak_records_archived", "Records committed to the lake", ["topic"], registry=r)
        self.bytes = Counter("kbak_bytes_archived", "Parquet bytes committed to the lake", ["topic"], registry=r)
        self.commits = Counter("kbak_commits", "Delta commits made by ingest", registry=r)
        self.errors = Counter("kbak_errors", "Errors seen by ingest", ["kind"], registry=r)
        self.lag = Gauge("kbak_partition_lag", "Records behind the partition's end", ["topic", "partition"], registry=r)
        self.assigned = Gauge(
            "kbak_assigned_partitions", "Partitions the consumer group has assigned to this worker", registry=r
        )
        self.last_commit = Gauge(
            "kbak_last_commit_timestamp_seconds", "Unix time of the last successful commit", registry=r
        )
        self.backups = Counter(
            "kafka_backup_backups", "Ingest runs by outcome (compliance-docs name)", ["outcome"], registry=r
        )
        self.backup_size = Gauge(
            "kafka_backup_backup_size_bytes", "Bytes written by the current ingest run", registry=r
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Start the /metrics endpoint; returns the bound port (useful with port 0).

        A port out of range or taken is a one-line error before the run starts.
        """
        if not 0 <= port <= 65535:
            raise UsageError(f"--metrics-port {port} is not a TCP port (0-65535)")
        try:
            server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise KbakError(f"--metrics-port {port}: cannot listen on {addr}:{port}: {exc.strerror or exc}") from None
        return server.server_port
