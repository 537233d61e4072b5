"""``kbak query``: named queries from ``queries/``, ad-hoc SQL, over the archive without a restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli._app import (
    AccessLogOpt,
    JsonOpt,
    LakeOpt,
    S3EndpointOpt,
    S3RegionOpt,
    app,
    friendly,
    lake_from,
    prepare_output,
)
from pipeline.core.errors import KbakError


@app.command("query")
@friendly
def query_cmd(
    name: Annotated[str | None, typer.Argument(help="A named query from queries/ (see --list).")] = None,
    lake: LakeOpt = "",
    sql: Annotated[str | None, typer.Option("--sql", help="Ad-hoc SQL over the records view.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the named queries and their parameters.")] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value, bound as a parameter (repeatable).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Table version (e.g. 12) or timestamp (e.g. 2024-10-01T00:00:00Z).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json, jsonl or parquet.")] = "table",
    json_out: JsonOpt = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (streamed).")] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows shown by --format table.")] = 100,
    reader: Annotated[
        str | None, typer.Option("--reader", help="Force the table reader: delta_scan, parquet or arrow.")
    ] = None,
    queries: Annotated[Path | None, typer.Option("--queries", help="Directory of named queries.")] = None,
    print_setup: Annotated[
        bool, typer.Option("--setup-sql", help="Print SQL giving any DuckDB client the same views and macros.")
    ] = False,
    decode: Annotated[
        bool,
        typer.Option("--decode", help="Show schema registry payloads (Avro, Protobuf, JSON Schema) decoded as JSON."),
    ] = False,
    s3_endpoint: S3EndpointOpt = None,
    s3_region: S3RegionOpt = None,
    access_log: AccessLogOpt = None,
) -> None:
    """Answer audit questions with SQL straight over the archive: no restore cluster needed."""
    # Imported here, not at module level, so that every other kbak command starts without DuckDB.
    from pipeline.core.access_log import log_access
    from pipeline.query.engine import connect, setup_sql, table_state
    from pipeline.query.export import write_result
    from pipeline.query.named import bind, check_sql_params, get_query, parse_assignments

    fmt = "json" if json_out else fmt

    if list_:
        _print_list(queries)
        return
    target = lake_from(lake, s3_endpoint, s3_region)
    output = prepare_output(output)
    _note_as_of(target, as_of)
    if print_setup:
        typer.echo(setup_sql(target, as_of), nl=False)
        return
    if (name is None) == (sql is None):
        raise KbakError("give a query NAME or --sql, not both" if name else "give a query NAME, --sql or --list")
    values = parse_assignments(param or [])
    if name is not None:
        query = get_query(name, queries)  # before opening the lake: a typo fails fast
        con = connect(target, as_of, reader, audit=False, decode=decode, only_for=query.sql)
        text, bound = query.sql, bind(con, query, values)
    else:
        check_sql_params(sql, values)
        con = connect(target, as_of, reader, audit=False, decode=decode, only_for=sql)
        text, bound = sql, values
    rows = write_result(con, text, bound, fmt.lower(), output, max_rows)
    version = table_state(con).version
    log_access("query", target, access_log, query=name, sql=text, params=bound, table_version=version, rows=rows)
    if output is not None:
        typer.echo(f"wrote {rows if rows is not None else 'the first'} rows to {output}", err=True)


def _note_as_of(target, as_of: str | None) -> None:
    """Say so on stderr when --as-of names a time after the newest version (the newest is read)."""
    from pipeline.core.table import as_of_note

    note = as_of_note(target, as_of)
    if note:
        typer.echo(f"kbak: note: {note}", err=True)


def _print_list(directory: Path | None) -> None:
    from pipeline.query.named import load_queries

    for q in load_queries(directory).values():
        typer.echo(f"{q.name}\n  {q.description}")
        for p in q.params:
            typer.echo(f"    --param {p.signature()}" + (f"  {p.help}" if p.help else ""))
        typer.echo("")
