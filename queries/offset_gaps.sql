-- Per partition, the offset ranges missing from the archive: holes between archived offsets and,
-- with leading = true, the range before the first archived offset (from 0). Transaction markers,
-- compaction and retention leave such holes in Kafka too. `reason` says what the custody chain
-- records for the hole: `deleted_before_archive` (ingest found it already gone at the source),
-- `erased` (kbak erase), `retention` (a retention policy), or `unexplained`.
-- @param topics VARCHAR[] = [] : topics to check, comma-separated (empty: every topic)
-- @param leading BOOLEAN = true : also report offsets 0 .. first archived - 1
WITH ordered AS (
    SELECT topic, "partition", "offset",
           lag("offset") OVER (PARTITION BY topic, "partition" ORDER BY "offset") AS previous
    FROM records
    WHERE len($topics) = 0 OR list_contains($topics, topic)
),
holes AS (
    SELECT topic, "partition",
           coalesce(previous + 1, 0) AS first_missing,
           "offset" - 1 AS last_missing,
           "offset" - coalesce(previous + 1, 0) AS missing
    FROM ordered
    WHERE "offset" > coalesce(previous + 1, 0) AND (previous IS NOT NULL OR $leading)
)
SELECT h.topic, h."partition", h.first_missing, h.last_missing, h.missing,
       CASE WHEN count(g.reason) > 0
                 AND sum(least(h.last_missing, g.last_missing) - greatest(h.first_missing, g.first_missing) + 1)
                     >= h.missing
            THEN string_agg(DISTINCT g.reason, ',' ORDER BY g.reason)
            ELSE 'unexplained' END AS reason
FROM holes h
LEFT JOIN kbak_recorded_gaps g
       ON g.topic = h.topic AND g."partition" = h."partition"
      AND g.first_missing <= h.last_missing AND g.last_missing >= h.first_missing
GROUP BY h.topic, h."partition", h.first_missing, h.last_missing, h.missing
ORDER BY h.topic, h."partition", h.first_missing
