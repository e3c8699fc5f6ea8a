-- The event log (schema version 1).
CREATE TABLE IF NOT EXISTS events (
    position       BIGINT      PRIMARY KEY,
    stream         TEXT        COLLATE "C" NOT NULL,
    category       TEXT        NOT NULL,
    version        BIGINT      NOT NULL,
    event_id       UUID        NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version SMALLINT    NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    -- text, not jsonb: the hash chain covers the payload's exact bytes.
    data           TEXT        NOT NULL,
    actor          TEXT,
    comune         TEXT,
    channel        TEXT,
    correlation_id UUID,
    causation_id   UUID,
    hash           BYTEA       NOT NULL,
    UNIQUE (stream, version),
    UNIQUE (event_id)
);
-- No index on category: every index is paid on each append, and filtered reads scan by position
-- (see the SQLite schema for the same choice).

CREATE TABLE IF NOT EXISTS event_streams (
    -- Byte order, as in SQLite and Rust, so that paging by name means the same everywhere.
    stream  TEXT   COLLATE "C" PRIMARY KEY,
    version BIGINT NOT NULL,
    hash    BYTEA  NOT NULL
);

-- One row: the last committed position. Appenders lock it for the length of their transaction,
-- which is what makes the global order gap-safe (see the module documentation).
CREATE TABLE IF NOT EXISTS event_log_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position  BIGINT  NOT NULL
);
INSERT INTO event_log_head (singleton, position) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
