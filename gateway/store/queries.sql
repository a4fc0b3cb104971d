-- Named queries. Each starts with a `-- name: <name>` line; gateway/store/queries.py loads them.

-- name: create_telemetry_staging
-- Per connection: the COPY target of a batch, emptied at commit.
CREATE TEMP TABLE IF NOT EXISTS telemetry_staging
    (LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;

-- name: copy_telemetry_staging
COPY telemetry_staging (time, device_id, message_key, received_at, profile, lat, lon, speed_kmh,
    heading_deg, fill_pct, distance_mm, temperature_c, battery_pct, battery_v, tilted, weight_kg,
    rfid, event, extra) FROM STDIN (FORMAT BINARY);

-- name: insert_telemetry_from_staging
INSERT INTO telemetry SELECT * FROM telemetry_staging ON CONFLICT DO NOTHING;

-- name: insert_rejected
INSERT INTO rejected_messages
    (received_at, topic, payload, payload_size, reason, detail, profile, device_id, message_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (message_key) DO NOTHING;

-- name: touch_devices
-- Registers unknown devices of accepting profiles and moves last_seen forward, in device_id order so
-- that concurrent replicas lock rows in the same order.
INSERT INTO devices AS d (device_id, profile, kind, first_seen, last_seen, uplink_frames_lost, last_f_cnt)
SELECT device_id, profile, kind, seen, seen, frames_lost, f_cnt
FROM unnest(%(device_ids)s::text[], %(profiles)s::text[], %(kinds)s::text[], %(seen)s::timestamptz[],
            %(frames_lost)s::bigint[], %(f_cnts)s::bigint[])
    AS t(device_id, profile, kind, seen, frames_lost, f_cnt)
ORDER BY device_id
ON CONFLICT (device_id) DO UPDATE
    SET last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
        first_seen = COALESCE(d.first_seen, EXCLUDED.first_seen),
        uplink_frames_lost = d.uplink_frames_lost + EXCLUDED.uplink_frames_lost,
        last_f_cnt = COALESCE(EXCLUDED.last_f_cnt, d.last_f_cnt);

-- name: all_devices
SELECT device_id, profile, kind, name, lat, lon, attributes, last_f_cnt, last_seen FROM devices;

-- name: upsert_device
INSERT INTO devices AS d (device_id, profile, kind, name, lat, lon, attributes)
VALUES (%(device_id)s, %(profile)s, %(kind)s, %(name)s, %(lat)s, %(lon)s, %(attributes)s)
ON CONFLICT (device_id) DO UPDATE
    SET profile = EXCLUDED.profile, kind = EXCLUDED.kind, name = EXCLUDED.name, lat = EXCLUDED.lat,
        lon = EXCLUDED.lon, attributes = EXCLUDED.attributes, updated_at = now();

-- name: ensure_partitions
SELECT wastegate_ensure_telemetry_partitions(%(first_day)s, %(last_day)s);

-- name: drop_partitions
SELECT wastegate_drop_telemetry_partitions(%(before_day)s);

-- name: is_hypertable
SELECT to_regclass('telemetry_default') IS NULL;

-- name: timescale_chunk_interval
SELECT set_chunk_time_interval('telemetry', %(interval)s::interval);

-- name: timescale_enable_compression
ALTER TABLE telemetry SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
    timescaledb.compress_orderby = 'time DESC');

-- name: timescale_compression_policy
SELECT remove_compression_policy('telemetry', if_exists => true),
       add_compression_policy('telemetry', compress_after => %(compress_after)s::interval);

-- name: timescale_retention_policy
SELECT remove_retention_policy('telemetry', if_exists => true),
       add_retention_policy('telemetry', drop_after => %(drop_after)s::interval);

-- name: timescale_remove_retention_policy
SELECT remove_retention_policy('telemetry', if_exists => true);

-- name: latest_readings
-- The newest row of each device (the primary key serves it: an index scan per device).
SELECT t.* FROM devices d
CROSS JOIN LATERAL (
    SELECT * FROM telemetry WHERE telemetry.device_id = d.device_id ORDER BY time DESC LIMIT 1
) t
WHERE %(device_ids)s::text[] IS NULL OR d.device_id = ANY(%(device_ids)s::text[]);

-- name: devices_by_id
SELECT device_id, profile, kind, name, lat, lon, attributes, last_f_cnt, last_seen FROM devices
WHERE %(device_ids)s::text[] IS NULL OR device_id = ANY(%(device_ids)s::text[])
ORDER BY device_id;

-- name: open_device_incident
-- Opens the incident of a (rule, subject), or counts one more occurrence of the open one. The partial
-- unique index makes this safe between replicas. `created` tells which happened.
INSERT INTO incidents AS i (source, service_code, severity, title, description, rule_id, device_id, subject,
                            dedupe_key, lat, lon, address, first_seen_at, last_seen_at, attributes)
VALUES ('device_rule', %(service_code)s, %(severity)s, %(title)s, %(description)s, %(rule_id)s, %(device_id)s,
        %(subject)s, %(dedupe_key)s, %(lat)s, %(lon)s, %(address)s, %(time)s, %(time)s, %(attributes)s)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status NOT IN ('resolved', 'closed')
DO UPDATE SET occurrences = i.occurrences + 1,
              last_seen_at = GREATEST(i.last_seen_at, EXCLUDED.last_seen_at),
              updated_at = now()
RETURNING id, (xmax = 0) AS created, severity;

-- name: open_incident_for_cause
SELECT id, severity FROM incidents
WHERE dedupe_key = %(dedupe_key)s AND status NOT IN ('resolved', 'closed')
FOR UPDATE;

-- name: set_incident_severity
UPDATE incidents SET severity = %(severity)s, updated_at = now() WHERE id = %(id)s;

-- name: resolve_device_incident
WITH target AS (
    SELECT id, status FROM incidents
    WHERE dedupe_key = %(dedupe_key)s AND status NOT IN ('resolved', 'closed')
    FOR UPDATE
)
UPDATE incidents i
SET status = 'resolved', resolved_at = %(time)s, last_seen_at = GREATEST(i.last_seen_at, %(time)s), updated_at = now()
FROM target WHERE i.id = target.id
RETURNING i.id, target.status;

-- name: insert_incident_event
INSERT INTO incident_events (incident_id, kind, actor, from_status, to_status, note, data)
VALUES (%(incident_id)s, %(kind)s, %(actor)s, %(from_status)s, %(to_status)s, %(note)s, %(data)s);

-- name: upsert_rule_state
INSERT INTO rule_state (rule_id, subject, state, updated_at) VALUES (%s, %s, %s, now())
ON CONFLICT (rule_id, subject) DO UPDATE SET state = EXCLUDED.state, updated_at = now();

-- name: delete_rule_state
DELETE FROM rule_state WHERE rule_id = %s AND subject = %s;

-- name: all_rule_state
SELECT rule_id, subject, state FROM rule_state;
