"""kbak custody commands (registered on import): list, describe, validate, hold, report."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli._app import (
    AccessLogOpt,
    JsonOpt,
    LakeOpt,
    S3EndpointOpt,
    S3RegionOpt,
    SseKeyOpt,
    SseOpt,
    app,
    emit_json,
    exit_code,
    fail,
    friendly,
    lake_from,
    prepare_output,
)
from pipeline.cli.cases import (
    CaseFromOpt,
    CaseJsonOpt,
    CaseKeyOpt,
    CaseOpt,
    CaseReasonOpt,
    CaseReleaseOpt,
    CasesOpt,
    CaseToOpt,
    CaseTopicsOpt,
    case_hold,
)
from pipeline.core.errors import KbakError, NotAnArchiveError, first_line

# kbak validate's exit codes (documented in docs/custody.md)
VALID, INVALID, USAGE, NOT_CHECKED = 0, 1, 2, 3
# list, describe, validate and report call a missing archive a usage error (the --lake argument is wrong).
CUSTODY_CODES = {NotAnArchiveError: USAGE}


class TextJson(StrEnum):
    text = "text"
    json = "json"


class DescribeFormat(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"


class ReportFormat(StrEnum):
    md = "md"
    html = "html"
    json = "json"


class OnOff(StrEnum):
    on = "on"
    off = "off"


class LockMode(StrEnum):
    GOVERNANCE = "GOVERNANCE"
    COMPLIANCE = "COMPLIANCE"


FormatOpt = Annotated[TextJson, typer.Option("--format", "-f", help="Output format.")]


@app.command("list")
@friendly(codes=CUSTODY_CODES)
def list_cmd(
    lake: LakeOpt = "",
    fmt: FormatOpt = TextJson.text,
    json_out: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
) -> None:
    """The archive's history: one line per ingest run or other operation, and per-topic coverage."""
    from pipeline.custody.history import history

    data = history(lake_from(lake, s3_endpoint, s3_region))
    if json_out or fmt is TextJson.json:
        emit_json(data)
        return
    typer.echo(
        f"{'BACKUP_ID / OPERATION':<40} {'VERSIONS':>9} {'CREATED_AT':<29} {'RECORDS':>9} {'BYTES':>11}  ", nl=False
    )
    typer.echo("TOPICS  OUTCOME")
    for r in data["runs"]:
        versions = f"{r['first_version']}" if r["first_version"] == r["last_version"] else ""
        versions = versions or f"{r['first_version']}..{r['last_version']}"
        ident = r["backup_id"] or r["operation"]
        gaps = f" ({r['gaps']} gaps recorded)" if r["gaps"] else ""
        removed = r.get("records_removed") or 0
        records = f"-{removed}" if removed and not r["records"] else r["records"]  # erasure, retention
        typer.echo(
            f"{ident:<40} {versions:>9} {r['created_at'] or '-':<29} {records:>9} {r['bytes']:>11}  "
            f"{','.join(r['topics']) or '-'}  {r['outcome']}{gaps}"
        )
    if data["topics"]:
        typer.echo("\ncoverage:")
    for t in data["topics"]:
        typer.echo(
            f"  {t['topic']}: {t['records']} records, {_ts(t['first_timestamp_ms'])} .. {_ts(t['last_timestamp_ms'])}"
        )
        for p in t["partitions"]:
            typer.echo(
                f"    [{p['partition']}] offsets {p['first_offset']}..{p['last_offset']} ({p['records']} records"
                + (f", {p['removed']} removed by erasure/retention)" if p.get("removed") else ")")
            )
    if data["head"]:
        typer.echo(
            f"\nhead of custody chain: version {data['head']['version']} sha256:{data['head']['manifest_sha256']}"
        )


@app.command("describe")
@friendly(codes=CUSTODY_CODES)
def describe_cmd(
    lake: LakeOpt = "",
    version: Annotated[int | None, typer.Option("--version", min=0, help="A table version.")] = None,
    version_short: Annotated[int | None, typer.Option("-v", min=0, hidden=True)] = None,  # old spelling
    backup_id: Annotated[str | None, typer.Option("--backup-id", help="An ingest run (all its versions).")] = None,
    fmt: Annotated[DescribeFormat, typer.Option("--format", "-f", help="Output format.")] = DescribeFormat.text,
    json_out: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    access_log: AccessLogOpt = None,
) -> None:
    """Everything a version's (or an ingest run's) custody manifest holds, checksums included."""
    from pipeline.core.access_log import log_access
    from pipeline.custody.history import describe

    target = lake_from(lake, s3_endpoint, s3_region)
    version = version if version is not None else version_short
    fmt = DescribeFormat.json if json_out else fmt
    data = describe(target, version=version, backup_id=backup_id)
    described = [v["version"] for v in data.get("versions") or [data]]
    log_access("describe", target, access_log, table_version=max(described, default=None), backup_id=backup_id)
    if fmt is DescribeFormat.json:
        emit_json(data)
    elif fmt is DescribeFormat.yaml:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        for v in data.get("versions") or [data]:
            _describe_text(v)


def _describe_text(d: dict) -> None:
    typer.echo(f"version {d['version']} [{d['status']}]: {d['operation']}")
    if d.get("log_error"):
        typer.echo(f"  corrupt Delta log entry _delta_log/{d['version']:020d}.json: {d['log_error']}")
    for key in ("backup_id", "created_at", "created_by", "source_cluster"):
        typer.echo(f"  {key}: {d[key]}")
    for key in ("body_sha256", "manifest_sha256", "previous_manifest_sha256", "delta_log_sha256", "checkpoint_sha256"):
        if d.get(key):
            typer.echo(f"  {key}: {d[key]}")
    for p in d["partitions"]:
        typer.echo(
            f"  {p['topic']}[{p['partition']}]: offsets {p['first_offset']}..{p['last_offset']} "
            f"({p['records']} records), {_ts(p['first_timestamp_ms'])} .. {_ts(p['last_timestamp_ms'])}"
        )
    for g in d["gaps"]:
        typer.echo(f"  gap {g['topic']}[{g['partition']}] {g['first_missing']}..{g['last_missing']}: {g['reason']}")
    for f in d["files_added"]:
        typer.echo(f"  + {f['path']}  {f.get('size')} bytes  {f.get('records')} records  sha256:{f.get('sha256')}")
    for f in d["files_removed"]:
        typer.echo(f"  - {f['path']}")


@app.command("validate")
@friendly(codes=CUSTODY_CODES)
def validate_cmd(
    lake: LakeOpt = "",
    deep: Annotated[bool, typer.Option("--deep", help="Also hash and decode every data file.")] = False,
    backup_id: Annotated[str | None, typer.Option("--backup-id", help="Check only this run's files.")] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="First seal unsealed versions, remove old orphan staged bodies.")
    ] = False,
    anchor: Annotated[
        list[str] | None,
        typer.Option("--anchor", help="VERSION=SHA256 of a manifest recorded outside the lake (repeatable)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-check the whole chain, not only what is new since the verified point.")
    ] = False,
    fmt: FormatOpt = TextJson.text,
    json_out: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Prove the archive is unchanged: exit 0 valid, 1 invalid, 2 usage error, 3 could not check (storage)."""
    from pipeline.core.table import CorruptLogError
    from pipeline.custody.validate import parse_anchor, validate

    lake_obj = _usage(lambda: lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id))
    anchors = dict(_usage(lambda: [parse_anchor(a) for a in anchor or []]))
    try:
        report = validate(lake_obj, deep=deep, backup_id=backup_id, repair=repair, anchors=anchors, full=full)
    except CorruptLogError as exc:  # --repair refused: the archive is damaged, which is a failed check
        fail(str(exc), INVALID)
    except KbakError as exc:  # exit 1 means INVALID: anything else that stops the check is 2 or 3
        fail(str(exc), USAGE if exit_code(exc, CUSTODY_CODES) == USAGE else NOT_CHECKED)
    except OSError as exc:  # a storage failure kbak has no better words for: still "not checked", never 1
        fail(f"could not check {lake_obj.uri}: {first_line(exc)}", NOT_CHECKED)
    if json_out or fmt is TextJson.json:
        emit_json(report.as_dict())
    else:
        verdict = "VALID" if report.valid else "INVALID"
        typer.echo(
            f"{verdict}: {report.lake} ({'deep' if deep else 'shallow'}): {len(report.errors)} errors, "
            f"{len(report.warnings)} warnings; {report.versions} versions, {report.files} files, "
            f"{report.records} records, {report.bytes} bytes"
        )
        if report.head:
            typer.echo(
                f"head of custody chain: version {report.head['version']} sha256:{report.head['manifest_sha256']}"
            )
        if report.verified_from is not None:
            typer.echo(f"checked from the verified point at version {report.verified_from} on (--full: everything)")
        if report.repaired:
            typer.echo(f"sealed versions {report.repaired}")
        for f in report.findings:
            typer.echo(f"{f.severity.upper():<7} {f.check:<26} {f.subject}: {f.message}")
        for g in report.gaps:
            typer.echo(
                f"gap     {g['topic']}[{g['partition']}] offsets {g['first_missing']}..{g['last_missing']} "
                f"({g['count']}): {'recorded, ' if g['recorded'] else ''}{g['reason']}"
            )
    if not report.valid:
        raise typer.Exit(INVALID)


@app.command("hold")
@friendly  # exit 1 for a missing archive, like erase (the case-hold commands document 1)
def hold_cmd(
    lake: LakeOpt = "",
    until: Annotated[
        str | None, typer.Option("--until", help="Retain until DATE (YYYY-MM-DD, UTC) or ISO time.")
    ] = None,
    mode: Annotated[
        LockMode | None,
        typer.Option("--mode", case_sensitive=False, help="Retention mode with --until [default: GOVERNANCE]."),
    ] = None,
    legal_hold: Annotated[OnOff | None, typer.Option("--legal-hold", help="Set or clear a legal hold.")] = None,
    status: Annotated[bool, typer.Option("--status", help="Report what is held until when.")] = False,
    fmt: FormatOpt = TextJson.text,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
    case: CaseOpt = None,
    topics: CaseTopicsOpt = None,
    from_: CaseFromOpt = None,
    to: CaseToOpt = None,
    key: CaseKeyOpt = None,
    reason: CaseReasonOpt = None,
    release: CaseReleaseOpt = False,
    cases: CasesOpt = False,
    as_json: CaseJsonOpt = False,
) -> None:
    """Write-once storage: S3 Object Lock on every object; or case holds on records (--case, --cases)."""
    from pipeline.custody import hold as h

    if case is not None or cases:
        lake_obj = lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id)
        case_hold(lake_obj, case, topics, from_, to, key or [], reason, release, cases, as_json or fmt is TextJson.json)
        return
    if until is None and legal_hold is None and not status:
        fail("give --until DATE [--mode ...], --legal-hold on|off, or --status", 2)
    if mode is not None and until is None:
        fail("--mode applies to retention: give --until DATE with it", 2)
    target = lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id)
    h.require_s3(target)
    results: list[dict] = []
    if until is not None:
        results.append(h.hold(target, h.parse_until(until), (mode or LockMode.GOVERNANCE).value))
    if legal_hold is not None:
        results.append(h.legal_hold(target, legal_hold is OnOff.on))
    if status:
        results.append(h.hold_status(target))
    if fmt is TextJson.json:
        emit_json(results[0] if len(results) == 1 else results)
        return
    for r in results:
        if "retention" in r:
            _status_text(r)
        elif "legal_hold" in r:
            typer.echo(f"legal hold {r['legal_hold']} on {r['objects']} objects of {r['lake']}")
        else:
            typer.echo(
                f"held {r.get('held', 0)} objects of {r['lake']} until {r['until']} ({r['mode']}); "
                f"{r.get('already-held', 0)} were already held as long or longer"
            )


def _status_text(r: dict) -> None:
    typer.echo(f"{r['lake']}: {r['objects']} objects; {r['unprotected']} without retention or legal hold")
    if r["default_retention"]:
        typer.echo(f"  bucket default retention: {r['default_retention']}")
    for line in r["retention"]:
        typer.echo(f"  {line['objects']:>6} objects held until {line['until']} ({line['mode']})")
    if r["legal_hold"]:
        typer.echo(f"  {r['legal_hold']:>6} objects under legal hold")
    for rel in r["unprotected_objects"]:
        typer.echo(f"  not held: {rel}")


@app.command("report")
@friendly(codes=CUSTODY_CODES)
def report_cmd(
    lake: LakeOpt = "",
    period: Annotated[str, typer.Option("--period", help="The month to report on, YYYY-MM.")] = "",
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="md, html or json.")] = ReportFormat.md,
    json_out: JsonOpt = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Validate deeply (hash and decode every file).")] = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    access_log: AccessLogOpt = None,
) -> None:
    """The monthly compliance report: coverage, gaps, validation, custody head, holds, accesses, chart."""
    from pipeline.custody import report as rp

    fmt = ReportFormat.json if json_out else fmt
    rp.parse_period(period)  # bad periods and unwritable outputs fail before any work
    output = prepare_output(output)
    data = rp.build_report(lake_from(lake, s3_endpoint, s3_region), period, deep=deep, access_log=access_log)
    if fmt is ReportFormat.json:
        text = json.dumps(data, indent=2, default=str) + "\n"
    elif fmt is ReportFormat.html:
        text = rp.render_html(data, rp.chart_png(data))
    else:
        chart = (output.parent if output else Path.cwd()) / f"{output.stem if output else 'kbak-report'}-{period}.png"
        chart.write_bytes(rp.chart_png(data))
        text = rp.render_markdown(data, chart.name)
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)


def _head(h: dict) -> str:
    return f"version {h['version']} sha256:{h['manifest_sha256']}"


def _usage(fn):
    """Bad arguments are usage errors (exit 2) for validate."""
    try:
        return fn()
    except KbakError as exc:
        fail(str(exc), USAGE)


def _ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    from pipeline.core.timefmt import iso_ms

    return iso_ms(ms)
