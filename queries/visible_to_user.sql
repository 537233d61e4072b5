-- What a user's records showed in the given topics during one UTC day: records keyed by the user,
-- or whose JSON value names the user in the given field ("what was visible to user Y on December 1st").
-- @param user VARCHAR : the user id, e.g. user-0042
-- @param day DATE : the day (UTC), e.g. 2024-12-01
-- @param topics VARCHAR[] = user-activity : topics to search, comma-separated (empty: every topic)
-- @param field VARCHAR = user_id : the JSON field of the value that holds the user id
SELECT "timestamp", topic, "partition", "offset", as_text(key) AS key, as_text(value) AS value,
       header_names(headers) AS header_names
FROM records
WHERE date = $day
  AND (len($topics) = 0 OR list_contains($topics, topic))
  AND (key = encode($user) OR json_field(value, $field) = $user)
ORDER BY "timestamp", topic, "partition", "offset"
