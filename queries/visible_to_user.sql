-- What a user's records showed in the given topics during one UTC day: records keyed by the user,
-- or whose value names the user in the given field ("what was visible to user Y on December 1st").
-- Values may be JSON or schema registry payloads decoded with the kept schemas (docs/schemas.md).
-- @param user VARCHAR : the user id, e.g. user-0042
-- @param day DATE : the day (UTC), e.g. 2024-12-01
-- @param topics VARCHAR[] = user-activity : topics to search, comma-separated (empty: every topic)
-- @param field VARCHAR = user_id : the field of the value that holds the user id
SELECT "timestamp", topic, "partition", "offset", shown(key) AS key, shown(value) AS value,
       header_names(headers) AS header_names
FROM records
WHERE date = $day
  AND (len($topics) = 0 OR list_contains($topics, topic))
  AND (key = encode($user) OR (is_framed(key) AND field(key, '$') = $user) OR field(value, $field) = $user)
ORDER BY "timestamp", topic, "partition", "offset"
