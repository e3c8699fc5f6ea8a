-- The event log (schema version 1). Positions are the rowid: dense, from 1, assigned by the single
-- writer inside its write transaction, so they follow commit order. Rows are never deleted
-- (erasure destroys keys, not events), so a position is never reused.
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_id       BLOB    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    INTEGER NOT NULL, -- microseconds since 1970-01-01 UTC
    recorded_at    INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    actor          TEXT,
    comune         TEXT,
    channel        TEXT,
    correlation_id BLOB,
    causation_id   BLOB,
    hash           BLOB    NOT NULL,
    UNIQUE (stream, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (event_id);
-- Deliberately no other index and no separate table of stream heads: every B-tree page an append
-- touches is one more WAL frame written and flushed per commit, which is what bounds a single
-- writer's durable appends. A stream's head is found through UNIQUE (stream, version); category
-- filters scan by position (at millions of rows a second).
