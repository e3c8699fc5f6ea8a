INSERT INTO event_streams (stream, version, hash) VALUES (?1, ?2, ?3)
ON CONFLICT (stream) DO UPDATE SET version = excluded.version, hash = excluded.hash
