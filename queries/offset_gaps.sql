-- Per partition, the offset ranges missing from the archive: holes between archived offsets and,
-- with leading = true, the range before the first archived offset (from 0). Transaction markers,
-- compaction and retention leave such holes in Kafka too; kbak ingest records the reason it saw
-- in each commit's kbak.gaps.
-- @param topics VARCHAR[] = [] : topics to check, comma-separated (empty: every topic)
-- @param leading BOOLEAN = true : also report offsets 0 .. first archived - 1
WITH ordered AS (
    SELECT topic, "partition", "offset",
           lag("offset") OVER (PARTITION BY topic, "partition" ORDER BY "offset") AS previous
    FROM records
    WHERE len($topics) = 0 OR list_contains($topics, topic)
)
SELECT topic, "partition",
       coalesce(previous + 1, 0) AS first_missing,
       "offset" - 1 AS last_missing,
       "offset" - coalesce(previous + 1, 0) AS missing
FROM ordered
WHERE "offset" > coalesce(previous + 1, 0) AND (previous IS NOT NULL OR $leading)
ORDER BY topic, "partition", first_missing
