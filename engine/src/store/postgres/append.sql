-- Schema version 2: a batch's append as one statement, committed on its own (one round trip).
--
-- The writer plans a batch in memory from what it believes: the log's head (`expected_head`) and
-- the batch's streams' versions (`expected_streams`, `expected_versions`, NULL for a stream that
-- does not exist). The statement writes only if that belief is true when it holds the head's
-- row lock, and returns the new head; otherwise it writes nothing and returns no row, and the
-- writer plans again under the lock (see `write_locked` in mod.rs).
--
-- Why the check can read the streams in the statement's snapshot: the head's UPDATE waits for
-- the row lock and then re-checks `position = expected_head` on the newest row. Every append
-- moves the head, so if it still equals what the writer saw before the statement began, nothing
-- was committed since the snapshot was taken, and the snapshot's stream versions are current.
--
-- plpgsql for one reason: its plans are cached and may be generic (`SET plan_cache_mode` below),
-- while the writer's session plans everything else at every execution. The version check is a
-- correlated lookup, which a generic plan made on an empty table still does through the index
-- (a join there would stay a sequential scan until the next ANALYZE).
CREATE OR REPLACE FUNCTION sportello_append(
    expected_head BIGINT, new_head BIGINT, expected_streams TEXT[], expected_versions BIGINT[],
    positions BIGINT[], streams TEXT[], categories TEXT[], versions BIGINT[], event_ids UUID[],
    event_types TEXT[], schema_versions SMALLINT[], occurred_ats TIMESTAMPTZ[],
    recorded_ats TIMESTAMPTZ[], payloads TEXT[], actors TEXT[], comunes TEXT[], channels TEXT[],
    correlation_ids UUID[], causation_ids UUID[], hashes BYTEA[],
    head_streams TEXT[], head_versions BIGINT[], head_hashes BYTEA[], notify_channel TEXT)
RETURNS SETOF BIGINT
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH moved AS (
        UPDATE event_log_head SET position = new_head
        WHERE position = expected_head
          AND NOT EXISTS (
              SELECT 1 FROM unnest(expected_streams, expected_versions) AS e(stream, version)
              WHERE (SELECT s.version FROM event_streams s WHERE s.stream = e.stream)
                    IS DISTINCT FROM e.version)
        RETURNING position
    ), new_events AS (
        INSERT INTO events (position, stream, category, version, event_id, event_type,
                            schema_version, occurred_at, recorded_at, data, actor, comune,
                            channel, correlation_id, causation_id, hash)
        SELECT e.* FROM unnest(positions, streams, categories, versions, event_ids, event_types,
                               schema_versions, occurred_ats, recorded_ats, payloads, actors,
                               comunes, channels, correlation_ids, causation_ids, hashes) AS e
        WHERE EXISTS (SELECT 1 FROM moved)
    ), new_heads AS (
        INSERT INTO event_streams (stream, version, hash)
        SELECT h.* FROM unnest(head_streams, head_versions, head_hashes) AS h
        WHERE EXISTS (SELECT 1 FROM moved)
        ON CONFLICT (stream) DO UPDATE SET version = excluded.version, hash = excluded.hash
    )
    -- Sent with the commit: followers wake up when the events are visible.
    SELECT m.position FROM moved m, pg_notify(notify_channel, m.position::TEXT);
END
$$;
