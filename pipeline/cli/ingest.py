"""``kbak ingest``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli._app import S3EndpointOpt, S3RegionOpt, SseKeyOpt, SseOpt, app, emit_json, friendly, lake_from
from pipeline.core import defaults


@app.command("ingest")
@friendly
def ingest_cmd(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config (OSO kafka-backup shape).")] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option("--bootstrap-servers", "-b", help="Source Kafka cluster, host:port[,host:port].")
    ] = None,
    topics: Annotated[list[str] | None, typer.Option("--topics", "-t", help="Regex of topics (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Regex of topics to skip.")] = None,
    lake: Annotated[str | None, typer.Option("--lake", help="Directory or s3://bucket/prefix.")] = None,
    once: Annotated[
        bool | None,
        typer.Option("--once/--continuous", help="Snapshot up to the end offsets seen at start, or run until stopped."),
    ] = None,
    group_id: Annotated[
        str | None, typer.Option("--group-id", help="Consumer group; default: one derived from the lake.")
    ] = None,
    source_cluster_id: Annotated[
        str | None, typer.Option("--source-cluster-id", help="Name recorded for the source; default: its cluster id.")
    ] = None,
    backup_id: Annotated[
        str | None,
        typer.Option("--backup-id", help="Name of this run in the custody chain; default: ingest-<time>-<id>."),
    ] = None,
    compression_level: Annotated[
        int | None,
        typer.Option(
            "--compression-level", min=1, max=22, help=f"zstd level.  [default: {defaults.COMPRESSION_LEVEL}]"
        ),
    ] = None,
    flush_records: Annotated[
        int | None,
        typer.Option(
            "--flush-records", min=1, help=f"Commit after this many records.  [default: {defaults.FLUSH_RECORDS}]"
        ),
    ] = None,
    flush_bytes: Annotated[
        int | None,
        typer.Option(
            "--flush-bytes", min=1, help=f"... or this many bytes of Arrow data.  [default: {defaults.FLUSH_BYTES}]"
        ),
    ] = None,
    flush_seconds: Annotated[
        float | None,
        typer.Option(
            "--flush-seconds", min=0.001, help=f"... or this many seconds.  [default: {defaults.FLUSH_SECONDS:g}]"
        ),
    ] = None,
    target_file_size: Annotated[
        int | None,
        typer.Option(
            "--target-file-size",
            help=f"Bytes per Parquet file, at most (>= 1 MiB).  [default: {defaults.TARGET_FILE_SIZE}]",
        ),
    ] = None,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
    kafka_setting: Annotated[
        list[str] | None, typer.Option("-X", "--kafka-setting", help="librdkafka key=value (repeatable).")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics.")] = None,
    snapshot_groups: Annotated[
        bool | None, typer.Option("--snapshot-groups", help="Record consumer group offsets in the lake.")
    ] = None,
    object_lock_days: Annotated[
        int | None, typer.Option("--object-lock-days", help="S3 Object Lock retention for what is written.")
    ] = None,
    topic_refresh_seconds: Annotated[
        float | None,
        typer.Option(
            "--topic-refresh-seconds",
            help=f"How often to look for new matching topics.  [default: {defaults.TOPIC_REFRESH_S:g}]",
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option("--workers", help="Ingest processes on this host, in one consumer group: N, or auto (CPUs)."),
    ] = None,
    connect_timeout: Annotated[
        float | None,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            help=f"Seconds Kafka may take to answer before the run fails.  [default: {defaults.CONNECT_TIMEOUT_S:g}]",
        ),
    ] = None,
    schema_registry: Annotated[
        str | None,
        typer.Option("--schema-registry", help="Schema Registry URL: keep the schemas of wire-format records."),
    ] = None,
    schema_registry_auth: Annotated[
        str | None, typer.Option("--schema-registry-auth", help="Registry basic auth as user:password.")
    ] = None,
    schema_registry_ca: Annotated[
        str | None, typer.Option("--schema-registry-ca", help="CA file (PEM) to verify the registry's TLS.")
    ] = None,
    schema_registry_cert: Annotated[
        str | None, typer.Option("--schema-registry-cert", help="Client certificate (PEM) for the registry.")
    ] = None,
    schema_registry_key: Annotated[
        str | None, typer.Option("--schema-registry-key", help="Client private key (PEM) for the registry.")
    ] = None,
    schema_registry_optional: Annotated[
        bool | None,
        typer.Option(
            "--schema-registry-optional",
            help="Archive records even when the registry cannot give their schema now (counted, not kept).",
        ),
    ] = None,
    compact: Annotated[
        bool | None, typer.Option("--compact", help="Continuous: compact each UTC day once it is closed.")
    ] = None,
    retention_apply: Annotated[
        bool | None, typer.Option("--retention-apply", help="Continuous: apply the retention policies daily.")
    ] = None,
    maintenance_seconds: Annotated[
        float | None,
        typer.Option(
            "--maintenance-seconds",
            min=0.1,
            help=f"How often --compact/--retention-apply check.  [default: {defaults.MAINTENANCE_S:g}]",
        ),
    ] = None,
    snapshot_timeout: Annotated[
        float,
        typer.Option(
            "--snapshot-timeout",
            min=0,
            help="--once: seconds to wait for partitions other group members hold before failing."
            f"  [default: {defaults.SNAPSHOT_TIMEOUT_S:g}]",
        ),
    ] = None,
    unassigned_warning: Annotated[
        float,
        typer.Option(
            "--unassigned-warning-seconds",
            min=0,
            help="Continuous: warn when the group assigns this worker no partition for this long."
            f"  [default: {defaults.UNASSIGNED_WARNING_S:g}]",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Archive Kafka topics into the lake, exactly once."""
    # Imported here so `kbak --help` and other commands do not pay for the ingest stack.
    from pipeline.core import profile
    from pipeline.core.config import BackupConfig, load_config
    from pipeline.core.kafka import parse_settings
    from pipeline.core.progress import plural, reporter_for_terminal
    from pipeline.core.secrets import resolve_settings
    from pipeline.ingest import IngestOptions, ingest
    from pipeline.ingest.workers import ingest_workers, worker_count

    cfg = load_config(config, BackupConfig) if config else BackupConfig()
    src, store, b = cfg.source, cfg.storage, cfg.backup
    settings = src.client_settings()
    settings.update(parse_settings(kafka_setting or []))
    settings = resolve_settings(settings)
    lake_uri = lake or store.lake_uri()
    opts = IngestOptions(
        bootstrap_servers=bootstrap_servers or ",".join(src.bootstrap_servers),
        lake=lake_from(
            lake_uri,
            s3_endpoint or store.endpoint,
            s3_region or store.region,
            sse or store.encryption.sse,
            sse_kms_key_id or store.encryption.kms_key_id,
        ),
        topics=list(topics or src.topics.include),
        exclude=list(exclude or src.topics.exclude),
        once=once if once is not None else (b.continuous is False),
        group_id=group_id or src.group_id,
        source_cluster_id=source_cluster_id or b.source_cluster_id,
        backup_id=backup_id or cfg.backup_id,
        compression_level=_pick(compression_level, b.compression_level, defaults.COMPRESSION_LEVEL),
        flush_records=_pick(flush_records, b.flush_records, defaults.FLUSH_RECORDS),
        flush_bytes=_pick(flush_bytes, b.flush_bytes, defaults.FLUSH_BYTES),
        flush_seconds=_pick(flush_seconds, b.flush_seconds, defaults.FLUSH_SECONDS),
        target_file_size=_pick(target_file_size, b.target_file_size, defaults.TARGET_FILE_SIZE),
        kafka_settings=settings,
        metrics_port=_pick(metrics_port, b.metrics_port, None),
        snapshot_groups=bool(_pick(snapshot_groups, b.snapshot_groups, False)),
        object_lock_days=_pick(object_lock_days, b.object_lock_days, None),
        topic_refresh_seconds=_pick(topic_refresh_seconds, b.topic_refresh_seconds, defaults.TOPIC_REFRESH_S),
        snapshot_timeout_seconds=_pick(snapshot_timeout, b.snapshot_timeout_seconds, defaults.SNAPSHOT_TIMEOUT_S),
        unassigned_warning_seconds=_pick(
            unassigned_warning, b.unassigned_warning_seconds, defaults.UNASSIGNED_WARNING_S
        ),
        connect_timeout_s=_pick(connect_timeout, b.connect_timeout_seconds, defaults.CONNECT_TIMEOUT_S),
        schema_registry=_registry_options(
            cfg.schema_registry,
            schema_registry,
            schema_registry_auth,
            schema_registry_ca,
            schema_registry_cert,
            schema_registry_key,
        ),
        schema_registry_optional=bool(_pick(schema_registry_optional, cfg.schema_registry.optional or None, False)),
    )
    count = worker_count(workers if workers is not None else b.workers)
    do_compact = bool(_pick(compact, b.compact, False))
    do_retention = bool(_pick(retention_apply, b.retention_apply, False))
    stop, maintenance = threading.Event(), None
    if cfg.retention or do_compact or do_retention:
        from pipeline.cli.lifecycle import start_maintenance

        maintenance = start_maintenance(
            opts,
            stop,
            cfg.retention,
            do_compact,
            do_retention,
            _pick(maintenance_seconds, b.maintenance_seconds, defaults.MAINTENANCE_S),
        )
    try:
        if count > 1:
            summary = ingest_workers(opts, count, reporter=reporter_for_terminal(quiet or json_out), stop=stop)
        else:
            summary = ingest(opts, reporter=reporter_for_terminal(quiet or json_out), stop=stop)
    finally:
        stop.set()
        if maintenance is not None:
            maintenance.join(120)  # let a compaction in progress finish its commit
    if profile.ENABLED:  # KBAK_PROFILE=1: where the time went, per stage (stderr)
        typer.echo(profile.report(summary.records), err=True)
    if json_out:
        emit_json(summary.as_dict())
        return
    typer.echo(
        f"archived {plural(summary.records, 'record')} ({summary.bytes_written / 1e6:.1f} MB in Parquet) from "
        f"{plural(len(summary.partitions), 'topic')} in {plural(summary.commits, 'commit')} "
        f"({_versions(summary.first_version, summary.last_version)}) in {summary.duration_s:.1f}s "
        f"[backup_id {summary.backup_id}]"
    )
    for topic, parts in sorted(summary.partitions.items()):
        for p, info in sorted(parts.items()):
            typer.echo(
                f"  {topic}[{p}]: offsets {info['first_offset']}..{info['last_offset']} ({info['records']} records)"
            )
    if summary.schemas is not None:
        sch = summary.schemas
        typer.echo(
            f"  schemas: {len(sch['kept'])} kept this run"
            + "".join(
                f"; {sum(sch[k].values())} records with {len(sch[k])} {k} schema ids {sorted(map(int, sch[k]))}"
                for k in ("unknown", "unkept")
                if sch[k]
            )
        )
    for gap in summary.gaps:
        typer.echo(
            f"  gap {gap['topic']}[{gap['partition']}] {gap['first_missing']}..{gap['last_missing']}: {gap['reason']}"
        )
    for warning in summary.warnings:
        typer.echo(f"  warning: {warning}")


def _versions(first: int | None, last: int | None) -> str:
    if first is None:
        return "nothing new to commit"
    return f"version {first}" if first == last else f"versions {first}..{last}"


def _pick(flag, from_file, default):
    if flag is not None:
        return flag
    return from_file if from_file is not None else default


def _registry_options(cfg, url, auth, ca, cert, key):
    """Registry settings from the flags, else from ``schema_registry:`` in the config; None without a URL."""
    from pipeline.schemas.registry import RegistryOptions

    url = url or cfg.url
    if not url:
        if any((auth, ca, cert, key)):
            from pipeline.core.errors import KbakError

            raise KbakError("--schema-registry-auth/-ca/-cert/-key need --schema-registry URL")
        return None
    return RegistryOptions(
        url=url,
        basic_auth=auth or cfg.basic_auth_user_info,
        ca_location=ca or cfg.ssl_ca_location,
        certificate_location=cert or cfg.ssl_certificate_location,
        key_location=key or cfg.ssl_key_location,
        key_password=cfg.ssl_key_password,
    )
