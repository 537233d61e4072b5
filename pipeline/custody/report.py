"""``kbak report``: the monthly compliance report (list backups, validate, holds) as one document.

Per topic and for the period (by record date, the table's ``date`` partition): records and Parquet
bytes, days with no data, offset gaps, plus the validation result, the head of the custody chain,
the holds in force and a chart of records per day per topic.
"""

from __future__ import annotations

import base64
import html
import io
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import KbakError, UsageError
from pipeline.core.storage import Lake
from pipeline.core.table import open_table
from pipeline.custody.chain import load_chain
from pipeline.custody.history import head, list_runs
from pipeline.custody.scan import Keys, find_gaps, recorded_gaps
from pipeline.custody.validate import validate


def parse_period(text: str) -> tuple[date, date]:
    """``YYYY-MM`` -> [first day, first day of the next month)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", text or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise UsageError(f"--period {text!r}: use a month as YYYY-MM (e.g. 2024-11)")
    start = date(int(m.group(1)), int(m.group(2)), 1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


def build_report(lake: Lake, period: str, deep: bool = False, access_log: str | None = None) -> dict:
    """The report's data; with an access log (``access_log`` or ``KBAK_ACCESS_LOG``) also who read the lake."""
    start, end = parse_period(period)
    chain = load_chain(lake)
    dt = open_table(lake)
    actions = pa.table(dt.get_add_actions(flatten=True))
    stats = [c for c in ("min.offset", "max.offset") if c in actions.column_names]
    files = actions.select(["path", "size_bytes", "num_records", "partition.topic", "partition.date", *stats])
    rows = [
        {"path": r["path"], "bytes": r["size_bytes"], "records": r["num_records"] or 0,
         "topic": r["partition.topic"], "date": r["partition.date"],
         "min_offset": r.get("min.offset"), "max_offset": r.get("max.offset")}
        for r in files.to_pylist()
    ]  # fmt: skip
    in_period = [r for r in rows if start <= r["date"] < end]
    days = [start + timedelta(d) for d in range((end - start).days)]
    today = datetime.now(UTC).date()
    # Every topic archived by the period's end: one that went quiet shows as days without data.
    topics = sorted({r["topic"] for r in rows if r["date"] < end})
    per_day: dict[str, dict[str, int]] = {t: {d.isoformat(): 0 for d in days} for t in topics}
    for r in in_period:
        per_day[r["topic"]][r["date"].isoformat()] += r["records"]
    unreadable: list[str] = []
    gaps = _period_gaps(lake, rows, chain, start, end, unreadable)
    topic_rows = []
    for t in topics:
        mine = [r for r in in_period if r["topic"] == t]
        topic_rows.append(
            {
                "topic": t,
                "records": sum(r["records"] for r in mine),
                "bytes": sum(r["bytes"] for r in mine),
                "files": len(mine),
                "days_without_data": [d for d, n in per_day[t].items() if n == 0 and date.fromisoformat(d) <= today],
                "offset_gaps": [g for g in gaps if g["topic"] == t],
                "records_per_day": per_day[t],
            }
        )
    check = validate(lake, deep=deep)
    runs = [r for r in list_runs(chain) if _touches(r, start, end)]
    return {
        "lake": lake.uri,
        "period": period,
        "from": start.isoformat(),
        "to": (end - timedelta(1)).isoformat(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "topics": topic_rows,
        "backups": runs,
        "validation": {
            "valid": check.valid,
            "deep": deep,
            "errors": [f.__dict__ for f in check.errors],
            "warnings": len(check.warnings),
            "versions": check.versions,
            "files": check.files,
        },
        "unreadable_files": sorted(unreadable),  # left out of the offset gaps; see validation
        "custody_head": head(chain),
        "holds": _holds(lake),
        "access": _access(lake, access_log, start, end),
    }


def _access(lake: Lake, uri: str | None, start: date, end: date) -> dict | None:
    """Accesses to this lake in the period, summarised from the access log (None: no log configured)."""
    from pipeline.core.access_log import AccessLog, summarise

    log = AccessLog.configured(uri)
    if log is None:
        return None
    bounds = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (start, end)]
    return {"log": log.location.uri, **summarise([r for r in log.read(*bounds) if r["lake"] == lake.uri])}


def _touches(run: dict, start: date, end: date) -> bool:
    """A run belongs to the period if it ran in it or archived records dated in it."""
    created = str(run["created_at"] or "")[:10]
    if start.isoformat() <= created < end.isoformat():
        return True
    lo, hi = run.get("first_timestamp_ms"), run.get("last_timestamp_ms")
    if lo is None or hi is None:
        return False
    p_lo = datetime.combine(start, datetime.min.time(), UTC).timestamp() * 1000
    p_hi = datetime.combine(end, datetime.min.time(), UTC).timestamp() * 1000
    return lo < p_hi and hi >= p_lo


def _holds(lake: Lake) -> dict:
    if not lake.is_s3:
        return {"in_force": False, "note": "local lake: write-once storage needs S3 Object Lock"}
    from pipeline.custody.hold import hold_status

    try:
        status = hold_status(lake)
    except KbakError as exc:
        return {"in_force": False, "note": str(exc)}
    return {"in_force": bool(status["retention"] or status["legal_hold"]), **status}


def _period_gaps(lake: Lake, rows: list[dict], chain, start: date, end: date, skipped: list[str]) -> list[dict]:
    """Holes between archived offsets with a neighbour record dated in the period.

    Files of the period and one day either side are read (two columns); then every other file whose
    Delta statistics say it may hold offsets of a hole (a record filed under another date, e.g. a
    timestamp in 1970 or 2100) is read too, until no hole has such a file: the holes left are the
    ones ``validate --deep`` and the ``offset_gaps`` query see.
    """
    window = [r for r in rows if start - timedelta(1) <= r["date"] < end + timedelta(1)]

    def read(r: dict) -> pa.Table | None:
        try:
            return pq.read_table(lake.path(r["path"]), columns=["partition", "offset"], filesystem=lake.fs)
        except Exception:  # missing or corrupt: validation names it; its offsets cannot count here
            skipped.append(r["path"])
            return None

    recorded = recorded_gaps(rec.body for rec in chain)
    found: list[tuple[dict, pa.Table]] = []
    todo, seen_paths, holes = window, set(), []
    while todo:
        seen_paths.update(r["path"] for r in todo)
        with ThreadPoolExecutor(max_workers=16 if lake.is_s3 else 4) as pool:
            tables = list(pool.map(read, todo))
        found += [(r, t) for r, t in zip(todo, tables, strict=True) if t is not None]
        keys = Keys.build([(r["topic"], r["path"], t) for r, t in found], with_day=[r["date"] for r, _t in found])
        holes = find_gaps(keys, recorded, leading=False)
        todo = [r for r in rows if r["path"] not in seen_paths and _may_fill(r, holes)]
    out = []
    for g in holes:
        if any(d is not None and start <= d < end for d in g.pop("days")):
            out.append(g)
    # Gaps ingest recorded before a partition's first archived record in the period are listed too.
    seen = {(g["topic"], g["partition"], g["first_missing"]) for g in out}
    for rec in chain:
        created = str(rec.manifest_body.created_at or "")[:10]
        for g in rec.manifest_body.gaps:
            key = (g["topic"], g["partition"], g["first_missing"])
            if start.isoformat() <= created < end.isoformat() and key not in seen:
                seen.add(key)
                count = g["last_missing"] - g["first_missing"] + 1
                out.append({**g, "count": count, "recorded": True})
    return sorted(out, key=lambda g: (g["topic"], g["partition"], g["first_missing"]))


def _may_fill(row: dict, holes: list[dict]) -> bool:
    """Whether a file's offset statistics overlap a hole of its topic (no statistics: it may)."""
    lo, hi = row.get("min_offset"), row.get("max_offset")
    return any(
        g["topic"] == row["topic"]
        and (lo is None or hi is None or (lo <= g["last_missing"] and g["first_missing"] <= hi))
        for g in holes
    )


def chart_png(report: dict) -> bytes:
    """Records per day per topic, one line per topic, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    for t in report["topics"]:
        days = [date.fromisoformat(d) for d in t["records_per_day"]]
        ax.plot(days, list(t["records_per_day"].values()), marker="o", markersize=3, label=t["topic"])
    ax.set_title(f"Records archived per day, {report['period']}")
    ax.set_ylabel("records")
    if report["topics"]:
        ax.legend(fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _summary_lines(r: dict) -> list[tuple[str, str]]:
    v = r["validation"]
    verdict = "valid" if v["valid"] else f"INVALID ({len(v['errors'])} errors)"
    h = r["custody_head"]
    holds = r["holds"]
    if holds.get("retention") or holds.get("legal_hold"):
        hold_text = "; ".join(f"{x['objects']} objects until {x['until']} ({x['mode']})" for x in holds["retention"])
        if holds.get("legal_hold"):
            hold_text += f"; {holds['legal_hold']} objects under legal hold"
        if holds.get("unprotected"):
            hold_text += f"; {holds['unprotected']} objects not held"
    else:
        hold_text = "none" + (f" ({holds['note']})" if holds.get("note") else "")
    return [
        ("Lake", r["lake"]),
        ("Period", f"{r['from']} to {r['to']}"),
        (
            "Validation",
            f"{verdict}, {'deep' if v['deep'] else 'shallow'}; {v['versions']} versions, {v['files']} files",
        ),
        ("Head of custody chain", f"version {h['version']}, sha256:{h['manifest_sha256']}" if h else "none"),
        ("Holds in force", hold_text),
        *_access_lines(r.get("access")),
        ("Generated", r["generated_at"]),
    ]


def _access_lines(a: dict | None) -> list[tuple[str, str]]:
    if a is None:
        return []
    users = ", ".join(f"{u} ({n})" for u, n in sorted(a["by_user"].items())) or "none"
    commands = ", ".join(f"{c} {n}" for c, n in sorted(a["by_command"].items())) or "none"
    return [("Accesses (access log)", f"{a['accesses']}: {commands}; {a['rows_returned']} rows returned; by {users}")]


def day_ranges(days: list[str]) -> str:
    """["2024-11-01", "2024-11-02", "2024-11-05"] -> "2024-11-01..2024-11-02, 2024-11-05"."""
    spans: list[list[date]] = []
    for d in sorted(date.fromisoformat(x) for x in days):
        if spans and d - spans[-1][1] == timedelta(1):
            spans[-1][1] = d
        else:
            spans.append([d, d])
    return ", ".join(a.isoformat() if a == b else f"{a}..{b}" for a, b in spans) or "none"


def _depth(v: dict) -> str:
    return "deep" if v["deep"] else "shallow"


def _gap_text(g: dict) -> str:
    kind = f"recorded: {g['reason']}" if g["recorded"] else "unexplained"
    return f"partition {g['partition']} offsets {g['first_missing']}..{g['last_missing']} ({g['count']}, {kind})"


def render_markdown(r: dict, chart_name: str) -> str:
    out = [f"# kbak compliance report: {r['period']}", ""]
    out += [f"- **{k}**: {v}" for k, v in _summary_lines(r)]
    out += ["", "## Topics", "", "| topic | records | bytes | files | days without data | offset gaps |"]
    out += ["|---|---:|---:|---:|---|---|"]
    for t in r["topics"]:
        days = day_ranges(t["days_without_data"])
        gaps = "; ".join(_gap_text(g) for g in t["offset_gaps"]) or "none"
        out.append(f"| {t['topic']} | {t['records']} | {t['bytes']} | {t['files']} | {days} | {gaps} |")
    out += ["", f"![Records per day per topic]({chart_name})", "", "## Backups in the period", ""]
    out += ["| backup_id / operation | versions | created_at | records | bytes | topics | outcome |"]
    out += ["|---|---|---|---:|---:|---|---|"]
    for b in r["backups"]:
        out.append(
            f"| {b['backup_id'] or b['operation']} | {b['first_version']}..{b['last_version']} | {b['created_at']} "
            f"| {b['records']} | {b['bytes']} | {', '.join(b['topics'])} | {b['outcome']} |"
        )
    if r["unreadable_files"]:
        out += ["", f"Offset gaps leave out {len(r['unreadable_files'])} unreadable files (see validation)."]
    if r["validation"]["errors"]:
        out += ["", "## Validation failures", ""]
        out += [f"- `{e['check']}` {e['subject']}: {e['message']}" for e in r["validation"]["errors"]]
    return "\n".join(out) + "\n"


def render_html(r: dict, png: bytes) -> str:
    e = html.escape
    summary = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_lines(r))
    topics = "".join(
        f"<tr><td>{e(t['topic'])}</td><td>{t['records']}</td><td>{t['bytes']}</td><td>{t['files']}</td>"
        f"<td>{e(day_ranges(t['days_without_data']))}</td>"
        f"<td>{e('; '.join(_gap_text(g) for g in t['offset_gaps']) or 'none')}</td></tr>"
        for t in r["topics"]
    )
    backups = "".join(
        f"<tr><td>{e(b['backup_id'] or b['operation'])}</td><td>{b['first_version']}..{b['last_version']}</td>"
        f"<td>{e(str(b['created_at']))}</td><td>{b['records']}</td><td>{b['bytes']}</td>"
        f"<td>{e(', '.join(b['topics']))}</td><td>{e(b['outcome'])}</td></tr>"
        for b in r["backups"]
    )
    failures = "".join(
        f"<li><code>{e(x['check'])}</code> {e(x['subject'])}: {e(x['message'])}</li>" for x in r["validation"]["errors"]
    )
    img = base64.b64encode(png).decode()
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>kbak compliance report {e(r['period'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>"
        f"<h1>kbak compliance report: {e(r['period'])}</h1><table>{summary}</table>"
        "<h2>Topics</h2><table><tr><th>topic</th><th>records</th><th>bytes</th><th>files</th>"
        f"<th>days without data</th><th>offset gaps</th></tr>{topics}</table>"
        f"<p><img alt='Records per day per topic' src='data:image/png;base64,{img}'></p>"
        "<h2>Backups in the period</h2><table><tr><th>backup_id / operation</th><th>versions</th>"
        f"<th>created_at</th><th>records</th><th>bytes</th><th>topics</th><th>outcome</th></tr>{backups}</table>"
        + (f"<h2>Validation failures</h2><ul>{failures}</ul>" if failures else "")
        + "</body></html>\n"
    )
