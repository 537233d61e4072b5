-- Every record of the given topics in a time window whose key is the customer id, or whose value
-- has the customer id in the given field: "all transactions for customer X during Q3 2024".
-- Values may be JSON or schema registry payloads (Avro, Protobuf, JSON Schema) decoded with the
-- schemas kept in the lake (see docs/schemas.md); --decode prints them decoded.
-- @param customer VARCHAR : the customer id, e.g. customer-0042
-- @param start TIMESTAMPTZ : window start, inclusive (e.g. 2024-07-01; UTC unless an offset is given)
-- @param end TIMESTAMPTZ : window end, exclusive (e.g. 2024-10-01)
-- @param topics VARCHAR[] = [] : topics to search, comma-separated (empty: every topic)
-- @param field VARCHAR = customer_id : the field of the value that holds the customer id
SELECT topic, "partition", "offset", "timestamp", shown(key) AS key, shown(value) AS value
FROM records
WHERE "timestamp" >= $start AND "timestamp" < $end
  AND date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)  -- lets readers skip whole partitions
  AND (len($topics) = 0 OR list_contains($topics, topic))
  AND (key = encode($customer)
       OR (is_framed(key) AND field(key, '$') = $customer)
       -- Payloads are parsed only where they can match: the id's bytes appear in them, or an escape
       -- could hide them, or the id looks like a number (binary formats store numbers encoded).
       OR (is_framed(value) AND may_hold(value, $customer) AND field(value, $field) = $customer)
       OR (NOT is_framed(value)
           AND (contains(as_text(value), $customer) OR contains(as_text(value), '\'))
           AND json_field(value, $field) = $customer))
ORDER BY "timestamp", topic, "partition", "offset"
