INSERT INTO events (position, stream, category, version, event_id, event_type, schema_version,
                    occurred_at, recorded_at, data, actor, comune, channel, correlation_id,
                    causation_id, hash)
SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::uuid[], $6::text[],
                     $7::smallint[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[],
                     $12::text[], $13::text[], $14::uuid[], $15::uuid[], $16::bytea[])
