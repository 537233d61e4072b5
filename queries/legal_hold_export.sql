-- Every record matching a case predicate, with its full provenance, for evidence files
-- (--format parquet or jsonl --output FILE). A record matches when it lies in the window and topics
-- and, when given, its key or value field is one of the custodians and its value contains one of the
-- terms (case-insensitive). key/value/headers are the archived bytes; *_text columns are for reading;
-- *_decoded columns are schema registry payloads (Avro, Protobuf, JSON Schema) or JSON decoded with
-- the schemas kept in the lake (NULL where they do not decode; see docs/schemas.md).
-- @param start TIMESTAMPTZ : window start, inclusive
-- @param end TIMESTAMPTZ : window end, exclusive
-- @param custodians VARCHAR[] = [] : ids whose records are held, comma-separated (empty: anyone)
-- @param terms VARCHAR[] = [] : search terms, comma-separated, any of them (empty: no term filter)
-- @param topics VARCHAR[] = [] : topics in scope, comma-separated (empty: every topic)
-- @param field VARCHAR = customer_id : the value field that identifies a custodian
SELECT topic, "partition", "offset", "timestamp", timestamp_type, key, value, headers,
       as_text(key) AS key_text, as_text(value) AS value_text,
       decoded(key) AS key_decoded, decoded(value) AS value_decoded,
       source_cluster, ingested_at
FROM records
WHERE "timestamp" >= $start AND "timestamp" < $end
  AND date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND (len($topics) = 0 OR list_contains($topics, topic))
  AND (len($custodians) = 0
       OR list_contains($custodians, as_text(key))
       OR (is_framed(key) AND list_contains($custodians, field(key, '$')))
       OR list_contains($custodians, field(value, $field)))
  AND (len($terms) = 0 OR len(list_filter($terms, lambda t: contains(lower(
       CASE WHEN is_framed(value) THEN coalesce(decoded(value), as_text(value)) ELSE as_text(value) END), lower(t)))) > 0)
ORDER BY topic, "partition", "offset"
