"""``kbak schemas``: the schemas kept with the archive (list, import from an archived ``_schemas`` topic)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli._app import JsonOpt, LakeOpt, S3EndpointOpt, S3RegionOpt, app, emit_json, friendly, lake_from

schemas_app = typer.Typer(
    help="Schemas kept with the archive, so Avro/Protobuf/JSON Schema payloads decode without a registry.",
    no_args_is_help=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
app.add_typer(schemas_app, name="schemas")


@schemas_app.callback(invoke_without_command=True)
@friendly
def schemas_cmd(
    ctx: typer.Context,
    lake: LakeOpt = "",
    json_out: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
) -> None:
    """List the kept schemas: id, type, subject, version, and first/last use in the archive."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.query.schema_usage import schema_usage

    rows = schema_usage(lake_from(lake, s3_endpoint, s3_region))
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no schemas kept and no schema registry payloads archived")
        return
    typer.echo(f"{'id':>6}  {'type':<8}  {'subject':<32} {'ver':>4}  {'records':>8}  first use .. last use")
    for r in rows:
        kind = r["type"] or "NOT KEPT"
        used = f"{r['first_use']} .. {r['last_use']}" if r["records"] else "unused"
        typer.echo(
            f"{r['id']:>6}  {kind:<8}  {r['subject'] or '-':<32} {r['version'] or '-':>4}  {r['records']:>8}  {used}"
        )


@schemas_app.command("import")
@friendly
def import_cmd(
    lake: LakeOpt = "",
    from_archive: Annotated[
        bool, typer.Option("--from-archive", help="Read the registrations archived from the registry's topic.")
    ] = False,
    topic: Annotated[str, typer.Option("--topic", help="The registry's topic as archived.")] = "_schemas",
    json_out: JsonOpt = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
) -> None:
    """Keep the schemas of an archived _schemas topic (for archives made without --schema-registry)."""
    from pipeline.core.errors import KbakError

    if not from_archive:
        raise KbakError("say where the schemas come from: --from-archive (the archived registry topic)")
    from pipeline.schemas.imports import import_from_archive

    summary = import_from_archive(lake_from(lake, s3_endpoint, s3_region), topic)
    if json_out:
        emit_json(summary.as_dict())
        return
    typer.echo(
        f"kept {len(summary.kept)} schemas from {summary.registrations} registrations in topic {topic}"
        + (f" ({len(summary.already_kept)} already kept)" if summary.already_kept else "")
        + (f" [custody version {summary.version}]" if summary.version is not None else "")
    )
    for bad in summary.invalid:
        typer.echo(f"  skipped invalid record {topic}[{bad['partition']}]@{bad['offset']}: {bad['reason']}")
