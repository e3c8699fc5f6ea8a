-- A batch's events, its streams' new heads and the log's head in one statement (one round trip
-- under the write lock). Data-modifying CTEs run whether or not they are referenced.
WITH new_events AS (
    INSERT INTO events (position, stream, category, version, event_id, event_type, schema_version,
                        occurred_at, recorded_at, data, actor, comune, channel, correlation_id,
                        causation_id, hash)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::uuid[],
                         $6::text[], $7::smallint[], $8::timestamptz[], $9::timestamptz[],
                         $10::text[], $11::text[], $12::text[], $13::text[], $14::uuid[],
                         $15::uuid[], $16::bytea[])
), new_heads AS (
    INSERT INTO event_streams (stream, version, hash)
    SELECT * FROM UNNEST($17::text[], $18::bigint[], $19::bytea[])
    ON CONFLICT (stream) DO UPDATE SET version = excluded.version, hash = excluded.hash
)
UPDATE event_log_head SET position = $20 RETURNING pg_notify($21, $20::text)
