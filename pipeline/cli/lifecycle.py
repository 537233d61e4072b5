"""kbak lifecycle commands (registered on import): retention set/show/apply, compact, vacuum, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from pipeline.cli._app import (
    DryRunOpt,
    JsonOpt,
    LakeOpt,
    S3EndpointOpt,
    S3RegionOpt,
    SseKeyOpt,
    SseOpt,
    app,
    emit_json,
    fail,
    friendly,
    lake_from,
)
from pipeline.core import defaults

NowOpt = Annotated[
    str | None, typer.Option("--now", help="Pretend it is this ISO time (UTC if no zone): reproducible runs.")
]

retention_app = typer.Typer(help="Retention policies: how long each topic is kept, applied on the record.")
app.add_typer(retention_app, name="retention")


@retention_app.command("set")
@friendly
def retention_set(
    lake: LakeOpt = "",
    topics: Annotated[str, typer.Option("--topics", help="Topics this policy covers (full-match regex).")] = "",
    days: Annotated[int, typer.Option("--days", help="Keep records this many days (whole UTC days).")] = 0,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the custody chain).")] = None,
    as_json: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Set the retention of the topics matching --topics (replaces a policy with the same regex)."""
    from pipeline.lifecycle.policies import check_days, set_policy

    if not topics:
        fail("--topics is required (a regex over topic names)")
    check_days(days)
    out = set_policy(lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id), topics, days, reason)
    if out["warning"]:
        typer.echo(f"kbak: warning: {out['warning']}", err=True)
    if as_json:
        emit_json(out)
        return
    matched = ", ".join(out["matches"]) or "no topic yet"
    typer.echo(f"retention {days} days for {topics!r} (version {out['version']}); matches {matched}")


@retention_app.command("show")
@friendly
def retention_show(
    lake: LakeOpt = "",
    as_json: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
) -> None:
    """The policies, and for every archived topic the retention that applies (the longest match wins)."""
    from pipeline.lifecycle.policies import show

    out = show(lake_from(lake, s3_endpoint, s3_region))
    if as_json:
        emit_json(out)
        return
    if not out["policies"]:
        typer.echo(f"no retention policy in {out['lake']}: every topic is kept forever")
    for p in out["policies"]:
        why = f" ({p['reason']})" if p["reason"] else ""
        typer.echo(f"policy {p['topics']!r}: {p['days']} days{why}, set {p['set_at']} by {p['set_by']}")
    for name in out["unmatched_policies"]:
        typer.echo(f"  policy {name!r} matches no archived topic")
    for t in out["topics"]:
        days = f"{t['days']} days by {t['policy']!r}" if t["days"] else "forever"
        typer.echo(f"topic {t['topic']}: {days} ({t['note']})")


@retention_app.command("apply")
@friendly
def retention_apply(
    lake: LakeOpt = "",
    dry_run: DryRunOpt = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Remove every (topic, date) past its policy (not under an open case hold); one commit."""
    from pipeline.core.progress import plural
    from pipeline.lifecycle.retention import apply

    out = apply(lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id), dry_run, _now(now))
    if as_json:
        emit_json(out)
        return
    if out.get("message"):
        typer.echo(out["message"])
        return
    verb = "would remove" if dry_run else "removed"
    for p in out["partitions_removed"]:
        what = f"{plural(p['files'], 'file')}, {plural(p['records'], 'record')} ({plural(p['days'], 'day')})"
        typer.echo(f"{verb} {p['topic']} {p['date']}: {what}")
    for k in out["kept_for_cases"]:
        typer.echo(f"kept {k['topic']} {k['date']}: held by case {', '.join(k['cases'])}")
    if out["nothing_to_do"]:
        typer.echo("nothing past its retention: nothing to do")
    elif out["version"] is not None:
        typer.echo(f"retention committed as version {out['version']}; `kbak vacuum` deletes the files")


@app.command("compact")
@friendly
def compact_cmd(
    lake: LakeOpt = "",
    topics: Annotated[str | None, typer.Option("--topics", help="Only these topics (full-match regex).")] = None,
    from_date: Annotated[str | None, typer.Option("--from-date", help="First date (YYYY-MM-DD).")] = None,
    to_date: Annotated[str | None, typer.Option("--to-date", help="Last date (YYYY-MM-DD).")] = None,
    target_file_size: Annotated[
        int, typer.Option("--target-file-size", help="Bytes per file to aim for (at least 1 MiB).")
    ] = defaults.TARGET_FILE_SIZE,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Rewrite each (topic, date)'s small files into files near the target size; one commit per day."""
    from pipeline.core.progress import plural
    from pipeline.lifecycle.compact import check_target, compact

    check_target(target_file_size)
    target = lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id)
    out = compact(target, topics, from_date, to_date, target_file_size, dry_run)
    if as_json:
        emit_json(out)
        return
    if not out["groups"]:
        typer.echo("no (topic, date) has small files to compact: nothing to do")
    for g in out["groups"]:
        if dry_run:
            typer.echo(
                f"would compact {g['topic']} {g['date']}: {g['files_to_rewrite']} files ({g['bytes']} bytes) "
                f"into about {g['files_after']}"
            )
        else:
            typer.echo(
                f"compacted {g['topic']} {g['date']}: {g['files_removed']} files -> {g['files_added']}, "
                f"{plural(g['records'], 'record')}, digest equal (version {g['version']})"
            )


@app.command("vacuum")
@friendly
def vacuum_cmd(
    lake: LakeOpt = "",
    dry_run: DryRunOpt = False,
    now: NowOpt = None,
    as_json: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Delete from storage the files no read needs (retention, erasure, expired compaction, orphans)."""
    from pipeline.core.progress import plural
    from pipeline.lifecycle.vacuum import vacuum

    out = vacuum(lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id), dry_run, _now(now))
    if as_json:
        emit_json(out)
        return
    verb = "would delete" if dry_run else "deleted"
    for f in out["files_deleted"]:
        if f["removed_by_version"] is None:
            typer.echo(f"{verb} {f['path']} (orphan: written, never committed)")
        else:
            typer.echo(f"{verb} {f['path']} ({f['reason']}, removed at version {f['removed_by_version']})")
    for f in out["files_retained"]:
        until = f"until {f['retain_until']}" if f["retain_until"] else "by a legal hold"
        typer.echo(f"retained {f['path']}: under Object Lock {until}")
    if out["checkpoints_deleted"]:
        v = [c["version"] for c in out["checkpoints_deleted"]]
        which = f"version {v[0]}" if len(v) == 1 else f"versions {v[0]}..{v[-1]}"
        typer.echo(f"{verb} {plural(len(v), 'superseded Delta checkpoint')} ({which})")
    if out["orphans_not_checked"]:
        typer.echo(f"orphan data files not looked for: {out['orphans_not_checked']}", err=True)
    if not out["files_deleted"] and not out["files_retained"] and not out["checkpoints_deleted"]:
        typer.echo("nothing to delete")
    elif out["version"] is not None:
        typer.echo(
            f"vacuum recorded as version {out['version']}: {plural(len(out['files_deleted']), 'file')} and "
            f"{plural(len(out['checkpoints_deleted']), 'checkpoint')} deleted"
        )


@app.command("upgrade")
@friendly
def upgrade_cmd(
    lake: LakeOpt = "",
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Give an archive created by an earlier kbak the table configuration kbak creates now (recorded)."""
    from pipeline.lifecycle.upgrade import upgrade

    out = upgrade(lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id), dry_run)
    if as_json:
        emit_json(out)
        return
    if not out["changes"]:
        typer.echo("the archive has the current table configuration: nothing to do")
    for c in out["changes"]:
        typer.echo(f"{'would set' if dry_run else 'set'} {c['property']}: {c['from'] or '(unset)'} -> {c['to']}")
    if out["version"] is not None:
        typer.echo(f"upgrade recorded as version {out['version']}")


@app.command("lifecycle")
@friendly
def lifecycle_cmd(
    lake: LakeOpt = "",
    print_: Annotated[bool, typer.Option("--print", help="Show the S3 lifecycle configuration (default).")] = False,
    apply_: Annotated[bool, typer.Option("--apply", help="Put it on the bucket and read it back.")] = False,
    ia_days: Annotated[int, typer.Option("--ia-days", help="Data files to STANDARD_IA after N days.")] = 30,
    glacier_ir_days: Annotated[
        int, typer.Option("--glacier-ir-days", help="Data files to GLACIER_IR after N days.")
    ] = 90,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
) -> None:
    """Storage tiers for data files only (never the log), in classes read without a restore; nothing expires."""
    from pipeline.lifecycle import tiers

    if print_ and apply_:
        fail("give --print or --apply, not both")
    target = lake_from(lake, s3_endpoint, s3_region)
    rule = tiers.tier_rule(target, ia_days, glacier_ir_days)
    if apply_:
        emit_json(tiers.apply(target, ia_days, glacier_ir_days))
        return
    emit_json(tiers.configuration(target, rule))


def start_maintenance(opts, stop, rules: list, compact: bool, retention_apply: bool, interval: float):
    """``kbak ingest``'s lifecycle side (see ``pipeline.lifecycle.maintenance.start_for_ingest``)."""
    from pipeline.lifecycle.maintenance import start_for_ingest

    if (compact or retention_apply) and opts.once:
        fail("--compact and --retention-apply run with continuous ingest (not --once)")
    return start_for_ingest(opts, stop, [r.model_dump() for r in rules], compact, retention_apply, interval, _warn)


def _warn(message: str) -> None:
    typer.echo(f"kbak: warning: {message}", err=True)


def _now(text: str | None) -> datetime | None:
    from pipeline.core.parsing import parse_time

    ms = parse_time(text, "--now")
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
