-- Per topic and partition: records, first/last offset, first/last timestamp, payload bytes
-- (key + value + headers) and the number of days covered.
-- @param topics VARCHAR[] = [] : topics to include, comma-separated (empty: every topic)
SELECT topic, "partition",
       count(*) AS records,
       min("offset") AS first_offset,
       max("offset") AS last_offset,
       min("timestamp") AS first_timestamp,
       max("timestamp") AS last_timestamp,
       CAST(sum(record_bytes(key, value, headers)) AS BIGINT) AS bytes,
       count(DISTINCT date) AS days
FROM records
WHERE len($topics) = 0 OR list_contains($topics, topic)
GROUP BY topic, "partition"
ORDER BY topic, "partition"
