"""``kbak hold --case ...``: case holds on records (the options and output; ``kbak hold`` registers them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli._app import emit_json, fail

if TYPE_CHECKING:
    from pipeline.core.storage import Lake

CaseOpt = Annotated[str | None, typer.Option("--case", help="Case id: open a case hold on records (or --release it).")]
CaseTopicsOpt = Annotated[str | None, typer.Option("--topics", help="With --case: topics held (full-match regex).")]
CaseFromOpt = Annotated[str | None, typer.Option("--from", help="With --case: records from this time (ISO or ms).")]
CaseToOpt = Annotated[str | None, typer.Option("--to", help="With --case: records up to this time (inclusive).")]
CaseKeyOpt = Annotated[list[str] | None, typer.Option("--key", help="With --case: only records with this key.")]
CaseReasonOpt = Annotated[str | None, typer.Option("--reason", help="With --case: why (recorded in the chain).")]
CaseReleaseOpt = Annotated[bool, typer.Option("--release", help="With --case: release the case.")]
CasesOpt = Annotated[bool, typer.Option("--cases", help="List the lake's case holds.")]
CaseJsonOpt = Annotated[bool, typer.Option("--json", help="JSON output (case holds).")]


def case_hold(
    lake: Lake,
    case: str | None,
    topics: str | None,
    from_: str | None,
    to: str | None,
    keys: list[str],
    reason: str | None,
    release: bool,
    list_cases: bool,
    as_json: bool,
) -> None:
    from pipeline.core.parsing import parse_key, parse_time
    from pipeline.core.timefmt import iso_ms
    from pipeline.custody import cases as cs

    if list_cases:
        if case is not None or release:
            fail("--cases lists the case holds: give it without --case/--release")
        data = [c.as_dict() for c in cs.all_cases(lake)]
        if as_json:
            emit_json({"lake": lake.uri, "cases": data})
            return
        if not data:
            typer.echo(f"no case holds in {lake.uri}")
        for c in data:
            window = f"{iso_ms(c['from_ms']) or '-'} .. {iso_ms(c['to_ms']) or '-'}"
            keys_text = f", {len(c['key_hmacs'])} keys" if c["key_hmacs"] else ""
            when = f"released {c['released_at']}" if c["status"] == "released" else f"opened {c['opened_at']}"
            typer.echo(f"{c['case_id']}: {c['status']} ({when}); topics {c['topics']}, {window}{keys_text}")
        return
    if release:
        if topics or from_ or to or keys:
            fail("--release takes only --case and --reason")
        out = cs.release_case(lake, case or "", reason)
        if as_json:
            emit_json(out)
        else:
            typer.echo(
                f"released case {out['case_id']} (version {out['version']}); "
                f"legal hold cleared on {out['legal_holds_cleared']} objects"
            )
        return
    if not topics:
        fail("--case needs --topics REGEX (the topics it holds)")
    out = cs.open_case(
        lake,
        case or "",
        topics,
        parse_time(from_, "--from"),
        parse_time(to, "--to", end=True),
        [parse_key(k) for k in keys],
        reason,
    )
    if as_json:
        emit_json(out)
    else:
        lock = f"; {out['object_lock']}" if out["object_lock"] else ""
        typer.echo(f"opened case {out['case_id']} (version {out['version']}){lock}")
