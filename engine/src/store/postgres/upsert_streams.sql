INSERT INTO event_streams (stream, version, hash)
SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])
ON CONFLICT (stream) DO UPDATE SET version = excluded.version, hash = excluded.hash
