"""``kbak erase``: the right to erasure, and ``kbak erase --status`` to prove it."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli._app import (
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


@app.command("erase")
@friendly
def erase_cmd(
    lake: LakeOpt = "",
    request_id: Annotated[str | None, typer.Option("--request-id", help="The erasure request's reference.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the custody chain).")] = None,
    key: Annotated[
        list[str] | None, typer.Option("--key", help="Records whose key is this (UTF-8, or hex:...).")
    ] = None,
    json_field: Annotated[
        list[str] | None, typer.Option("--json-field", help="FIELD=VALUE: records whose JSON value has it.")
    ] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="NAME=VALUE: records with this header.")] = None,
    topics: Annotated[
        list[str] | None, typer.Option("--topics", help="Only these topics (full-match regex, repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be erased; change nothing.")] = False,
    except_held: Annotated[
        bool, typer.Option("--except-held", help="Erase what no open case holds; report what is kept.")
    ] = False,
    status: Annotated[bool, typer.Option("--status", help="Prove an earlier erasure (by request id or key).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    sse: SseOpt = None,
    sse_kms_key_id: SseKeyOpt = None,
) -> None:
    """Erase a data subject's records from every version of the archive, provably (GDPR Art. 17)."""
    from pipeline.core.progress import plural
    from pipeline.erasure import erase, erase_status

    target = lake_from(lake, s3_endpoint, s3_region, sse, sse_kms_key_id)
    if status:
        if header or len(key or []) + len(json_field or []) + (request_id is not None) != 1:
            fail("--status takes one of --request-id, --key or --json-field FIELD=VALUE")
        found = erase_status(target, request_id, (key or [None])[0], (json_field or [None])[0])
        if as_json:
            emit_json(found)
            return
        for e in found["erasures"]:
            typer.echo(
                f"request {e['request_id']}: version {e['version']}, {e['created_at']} by {e['created_by']}, "
                f"{plural(e['records_erased'], 'record')} ({e['reason']}): {e['state']}"
            )
        return
    out = erase(
        target,
        request_id or "",
        reason or "",
        keys=key or [],
        json_fields=json_field or [],
        headers=header or [],
        topics=topics or [],
        dry_run=dry_run,
        except_held=except_held,
    )
    if as_json:
        emit_json(out)
        return
    verb = "would erase" if dry_run else "erased"
    typer.echo(f"{verb} {plural(out['records'], 'record')} (request {out['request_id']}) from {out['lake']}")
    for part in out["partitions"]:
        typer.echo(f"  {part['topic']}[{part['partition']}]: {plural(part['records'], 'record')}")
    files = out["files_to_rewrite"]
    if out["records"]:
        typer.echo(f"  files rewritten: {files['current']} current, {files['historical']} only in older versions")
    for k in out["held_kept"]:
        typer.echo(f"  kept {plural(k['records'], 'record')} held by case {k['case']}")
    if not dry_run and out.get("version") is not None:
        typer.echo(f"  version {out['version']}; originals are deleted from storage by kbak vacuum")
