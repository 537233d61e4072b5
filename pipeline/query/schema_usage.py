"""Where each kept schema is used: ``kbak schemas`` lists kept schemas with their first/last use."""

from __future__ import annotations

from pipeline.core.storage import Lake
from pipeline.schemas.store import SchemaStore

# One pass over the framed keys and values: records, topics and time range per schema id.
USAGE_SQL = """
SELECT sid, count(*) AS records, list_sort(list(DISTINCT topic)) AS topics,
       min("timestamp") AS first_use, max("timestamp") AS last_use
FROM (
    SELECT schema_id(key) AS sid, topic, "timestamp" FROM records WHERE is_framed(key)
    UNION ALL
    SELECT schema_id(value) AS sid, topic, "timestamp" FROM records WHERE is_framed(value)
)
GROUP BY sid
"""


def schema_usage(lake: Lake) -> list[dict]:
    """Every kept schema (id order) with its use in the archive, then ids used but not kept."""
    from pipeline.query.engine import connect

    kept = SchemaStore(lake).load_all()
    con = connect(lake)
    try:
        usage = {row[0]: row for row in con.execute(USAGE_SQL).fetchall()}
    finally:
        con.close()
    out = []
    for sid in sorted(set(kept) | set(usage)):
        s = kept.get(sid)
        _sid, records, topics, first, last = usage.get(sid, (sid, 0, [], None, None))
        out.append(
            {
                "id": sid,
                "kept": s is not None,
                "type": s.schema_type if s else None,
                "subject": s.subject if s else None,
                "version": s.version if s else None,
                "source": s.source if s else None,
                "records": records,
                "topics": topics,
                "first_use": first.isoformat() if first else None,
                "last_use": last.isoformat() if last else None,
            }
        )
    return out
