-- Records and payload bytes (key + value + headers) per topic per UTC day.
-- @param topics VARCHAR[] = [] : topics to include, comma-separated (empty: every topic)
-- @param from_day DATE = NULL : first day, inclusive (default: the first archived)
-- @param to_day DATE = NULL : last day, inclusive (default: the last archived)
SELECT topic, date AS day, count(*) AS records, CAST(sum(record_bytes(key, value, headers)) AS BIGINT) AS bytes
FROM records
WHERE (len($topics) = 0 OR list_contains($topics, topic))
  AND ($from_day IS NULL OR date >= $from_day)
  AND ($to_day IS NULL OR date <= $to_day)
GROUP BY topic, date
ORDER BY topic, day
