-- Records whose key or value is in the schema registry wire format but does not decode with the
-- schemas kept in the lake: the schema id was never kept (unknown to the registry at ingest, or an
-- archive made without --schema-registry), or the payload is corrupt. The bytes are archived as
-- they came; `kbak schemas import` can add missing schemas later (docs/schemas.md).
-- @param topics VARCHAR[] = [] : topics to check, comma-separated (empty: every topic)
WITH framed AS (
    SELECT topic, "partition", "offset", "timestamp", part, payload
    FROM records, LATERAL (VALUES ('key', key), ('value', value)) AS p(part, payload)
    WHERE (len($topics) = 0 OR list_contains($topics, topic)) AND is_framed(payload)
)
SELECT topic, "partition", "offset", "timestamp", part, schema_id(payload) AS schema_id,
       undecodable_reason(payload) AS reason
FROM framed
WHERE undecodable_reason(payload) IS NOT NULL
ORDER BY topic, "partition", "offset", part
