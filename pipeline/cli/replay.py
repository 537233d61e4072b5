"""``kbak replay``: archived records back into a Kafka cluster (flags override ``--config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli._app import AccessLogOpt, S3EndpointOpt, S3RegionOpt, app, emit_json, friendly, lake_from

Many = list[str] | None


@app.command("replay")
@friendly
def replay_cmd(
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML config (OSO kafka-backup restore shape).")
    ] = None,
    lake: Annotated[str | None, typer.Option("--lake", help="Directory or s3://bucket/prefix.")] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option("--bootstrap-servers", "-b", help="Target Kafka cluster, host:port[,host:port].")
    ] = None,
    topic: Annotated[Many, typer.Option("--topic", help="Archived topic to replay, exact name (repeatable).")] = None,
    topic_short: Annotated[Many, typer.Option("-t", hidden=True)] = None,  # old spelling of --topic
    partition: Annotated[list[int] | None, typer.Option("--partition", help="Source partition (repeatable).")] = None,
    partition_short: Annotated[list[int] | None, typer.Option("-p", hidden=True)] = None,  # old spelling
    from_: Annotated[str | None, typer.Option("--from", help="Record time, inclusive: epoch ms or ISO-8601.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Record time, inclusive; a bare date = its end.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Record key: UTF-8 text or hex:BYTES.")] = None,
    where: Annotated[str | None, typer.Option("--where", help="SQL predicate over the record columns.")] = None,
    offsets: Annotated[Many, typer.Option("--offsets", help="P:START-END source offsets (repeatable).")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Table version or timestamp.")] = None,
    topic_map: Annotated[Many, typer.Option("--topic-map", help="SOURCE=TARGET topic (repeatable).")] = None,
    repartition: Annotated[str | None, typer.Option("--repartition", help="murmur2 | round-robin.")] = None,
    create_topics: Annotated[
        bool | None, typer.Option("--create-topics", help="Create missing targets like the source.")
    ] = None,
    offset_headers: Annotated[
        bool | None, typer.Option("--offset-headers", help="Add kbak.source.* provenance headers.")
    ] = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Progress file (default: one in the lake); a rerun resumes.")
    ] = None,
    again: Annotated[
        bool, typer.Option("--again", help="Deliver again what this replay already delivered (a fresh copy).")
    ] = False,
    dry_run: Annotated[bool | None, typer.Option("--dry-run", help="Show what would be produced.")] = None,
    schema_registry_target: Annotated[
        str | None,
        typer.Option(
            "--schema-registry-target",
            help="Register the kept schemas in this registry and rewrite each record's schema id to its id.",
        ),
    ] = None,
    schema_registry_target_auth: Annotated[
        str | None, typer.Option("--schema-registry-target-auth", help="Target registry basic auth, user:password.")
    ] = None,
    rate_limit: Annotated[str | None, typer.Option("--rate-limit", help="Records per second (e.g. 500, 2k).")] = None,
    rate_limit_bytes: Annotated[
        str | None, typer.Option("--rate-limit-bytes", help="Key+value bytes per second (e.g. 5MB).")
    ] = None,
    restore_groups: Annotated[
        Many, typer.Option("--restore-groups", help="Consumer group to restore on the target (repeatable).")
    ] = None,
    backup_id: Annotated[str | None, typer.Option("--backup-id", help="Group snapshot of this ingest run.")] = None,
    max_records: Annotated[int | None, typer.Option("--max-records", help="Stop (resumably) after N.")] = None,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", help="Seconds the target may take to answer.")
    ] = 10.0,
    delivery_timeout: Annotated[
        float, typer.Option("--delivery-timeout", help="Seconds a record may wait for the target's ack.")
    ] = 30.0,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    kafka_setting: Annotated[Many, typer.Option("-X", "--kafka-setting", help="librdkafka key=value.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    access_log: AccessLogOpt = None,
) -> None:
    """Replay archived records to a Kafka cluster, byte for byte (or --dry-run to see what would go)."""
    from pipeline.core.config import RestoreConfig, load_config
    from pipeline.core.kafka import parse_settings
    from pipeline.core.progress import reporter_for_terminal
    from pipeline.core.secrets import resolve_settings
    from pipeline.core.table import as_of_note
    from pipeline.replay import ReplayFailed, ReplayOptions, parse_key, parse_offsets, parse_time, parse_topic_map
    from pipeline.replay import replay as run_replay
    from pipeline.replay.options import parse_rate

    cfg = load_config(config, RestoreConfig) if config else RestoreConfig()
    r, tgt, store = cfg.restore, cfg.target, cfg.storage
    settings = tgt.client_settings()
    settings.update(parse_settings(kafka_setting or []))
    settings = resolve_settings(settings, env_prefix="KBAK_TARGET_")
    groups = [g.strip() for item in (restore_groups or r.consumer_groups) for g in item.split(",") if g.strip()]
    options = ReplayOptions(
        lake=lake_from(lake or store.lake_uri(), s3_endpoint or store.endpoint, s3_region or store.region),
        bootstrap_servers=bootstrap_servers or ",".join(tgt.bootstrap_servers) or None,
        topics=[*(topic or []), *(topic_short or [])] or list(r.topics),
        partitions=[*(partition or []), *(partition_short or [])] or list(r.partitions),
        from_ms=parse_time(_pick(from_, r.time_window_start), "--from"),
        to_ms=parse_time(_pick(to, r.time_window_end), "--to", end=True),
        key=parse_key(_pick(key, r.key)),
        where=_pick(where, r.where),
        offsets=parse_offsets(list(offsets or r.offsets)),
        as_of=_pick(as_of, r.as_of),
        topic_map=parse_topic_map(topic_map) if topic_map else dict(r.topic_mapping),
        repartition=_pick(repartition, r.repartition),
        create_topics=bool(_pick(create_topics, r.create_topics)),
        offset_headers=bool(_pick(offset_headers, r.include_offset_headers)),
        checkpoint=_pick(checkpoint, r.checkpoint),
        again=again,
        dry_run=bool(_pick(dry_run, r.dry_run)),
        rate_records=parse_rate(_pick(rate_limit, r.rate_limit_records), "--rate-limit"),
        rate_bytes=parse_rate(_pick(rate_limit_bytes, r.rate_limit_bytes), "--rate-limit-bytes"),
        restore_groups=groups,
        backup_id=_pick(backup_id, cfg.backup_id),
        max_records=_pick(max_records, r.max_records),
        kafka_settings=settings,
        connect_timeout_s=connect_timeout,
        delivery_timeout_s=delivery_timeout,
        schema_registry_target=_target_registry(schema_registry_target, schema_registry_target_auth),
    )
    note = as_of_note(options.lake, options.as_of)  # a time after the newest version: say which is read
    if note:
        typer.echo(f"kbak: note: {note}", err=True)
    try:
        summary = run_replay(options, reporter=reporter_for_terminal(quiet or json_out))
    except ReplayFailed as exc:
        _show(exc.summary, json_out)  # exactly what was delivered, then the one-line error
        _log_access(options, exc.summary, access_log)
        raise
    _show(summary, json_out)
    _log_access(options, summary, access_log)


def _log_access(options, summary, uri: str | None) -> None:
    """The replay's record in the access log: its selection (values keyed-hashed), version, rows."""
    from pipeline.core.access_log import log_access

    o = options
    selection = {
        "topics": o.topics,
        "partitions": o.partitions,
        "from": o.from_ms,
        "to": o.to_ms,
        "key": o.key,
        "where": o.where,
        "offsets": o.offsets,
        "as_of": o.as_of,
    }
    log_access(
        "replay",
        o.lake,
        uri,
        params={k: v for k, v in selection.items() if v not in (None, [], {})},
        table_version=summary.table_version,
        rows=summary.records,
        target=o.bootstrap_servers,
        dry_run=o.dry_run,
    )


def _show(summary, json_out: bool) -> None:
    """Print a ReplaySummary: JSON, or lines for a person."""
    from pipeline.core.progress import plural
    from pipeline.core.timefmt import iso_ms

    if json_out:
        emit_json(summary.as_dict())
        return
    d = summary.as_dict()
    mb = summary.bytes / 1e6
    if summary.already_delivered_at is not None:
        typer.echo(
            f"nothing to do: already delivered by replay at {summary.already_delivered_at} "
            f"({summary.skipped_by_checkpoint} records of table version {summary.table_version} to "
            f"{summary.target}); use --again for a fresh copy "
            f"[checkpoint {summary.checkpoint}]"
        )
        return
    if summary.dry_run:
        typer.echo(
            f"dry run: would replay {summary.records} records ({mb:.1f} MB key+value) from table version "
            f"{summary.table_version}; nothing was produced"
        )
        for p in summary.plan:
            typer.echo(
                f"  {p['topic']}[{p['partition']}]: {p['records']} records, {p['bytes']} bytes, offsets "
                f"{p['first_offset']}..{p['last_offset']}, {p['first_timestamp']} .. {p['last_timestamp']}"
            )
        return
    first, last = summary.time_range()
    times = f"; record times {iso_ms(first)} .. {iso_ms(last)}" if first is not None else ""
    typer.echo(
        f"{summary.status}: replayed {plural(summary.records, 'record')} ({mb:.1f} MB key+value) to "
        f"{summary.target} in {summary.duration_s:.1f}s ({d['records_per_s'] or 0:,.0f} records/s){times} "
        f"[table version {summary.table_version}]"
    )
    if summary.skipped_by_checkpoint:
        typer.echo(
            f"  resumed: {summary.skipped_by_checkpoint} records were delivered earlier and not again "
            f"(checkpoint {summary.checkpoint}; --again for a fresh copy)"
        )
    if summary.checkpoint_note:
        typer.echo(f"  note: {summary.checkpoint_note}")
    for topic, parts in d["topics"].items():
        for p, s in parts.items():
            typer.echo(
                f"  {topic}[{p}]: {s['records']} records, {s['bytes']} bytes, offsets "
                f"{s['first_offset']}..{s['last_offset']}, {s['first_timestamp']} .. {s['last_timestamp']}"
            )
    for group, info in summary.groups.items():
        for row in info["committed"]:
            typer.echo(f"  group {group}: {row['target_topic']}[{row['target_partition']}] -> {row['target_offset']}")


def _pick(flag, from_file):
    return flag if flag is not None else from_file


def _target_registry(url: str | None, auth: str | None):
    from pipeline.core.errors import KbakError
    from pipeline.schemas.registry import RegistryOptions

    if not url:
        if auth:
            raise KbakError("--schema-registry-target-auth needs --schema-registry-target URL")
        return None
    return RegistryOptions(url=url, basic_auth=auth)
