INSERT INTO events (position, stream, category, version, event_id, event_type, schema_version,
                    occurred_at, recorded_at, data, actor, comune, channel, correlation_id,
                    causation_id, hash)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
