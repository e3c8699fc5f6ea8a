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
CREATE INDEX IF NOT EXISTS events_by_category ON events (category, position);

-- The head of each stream: its version and the hash the next event chains to.
CREATE TABLE IF NOT EXISTS event_streams (
    stream  TEXT    PRIMARY KEY,
    version INTEGER NOT NULL,
    hash    BLOB    NOT NULL
) WITHOUT ROWID;
