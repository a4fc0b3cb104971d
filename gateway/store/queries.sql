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

-- name: insert_telemetry_from_staging_returning
INSERT INTO telemetry SELECT * FROM telemetry_staging ON CONFLICT DO NOTHING RETURNING message_key;

-- name: insert_rejected
INSERT INTO rejected_messages
    (received_at, topic, payload, payload_size, reason, detail, profile, device_id, message_key)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (message_key) DO NOTHING;

-- name: create_devices_seen_staging
-- Per connection: what a batch says about its devices, COPYed in, emptied at commit.
CREATE TEMP TABLE IF NOT EXISTS devices_seen_staging
    (device_id text, profile text, kind text, seen timestamptz, frames_lost bigint, f_cnt bigint,
     reading_at timestamptz)
    ON COMMIT DELETE ROWS;

-- name: copy_devices_seen_staging
COPY devices_seen_staging (device_id, profile, kind, seen, frames_lost, f_cnt, reading_at) FROM STDIN (FORMAT BINARY);

-- name: touch_devices
-- Registers unknown devices of accepting profiles and moves last_seen forward, in device_id order so
-- that concurrent replicas lock rows in the same order.
INSERT INTO devices AS d (device_id, profile, kind, first_seen, last_seen, uplink_frames_lost, last_f_cnt,
                          last_reading_at)
SELECT device_id, profile, kind, seen, seen, frames_lost, f_cnt, reading_at
FROM devices_seen_staging
ORDER BY device_id
ON CONFLICT (device_id) DO UPDATE
    SET last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
        last_reading_at = GREATEST(d.last_reading_at, EXCLUDED.last_reading_at),
        first_seen = COALESCE(d.first_seen, EXCLUDED.first_seen),
        uplink_frames_lost = d.uplink_frames_lost + EXCLUDED.uplink_frames_lost,
        last_f_cnt = COALESCE(EXCLUDED.last_f_cnt, d.last_f_cnt);

-- name: all_devices
SELECT device_id, profile, kind, name, lat, lon, attributes, last_f_cnt, last_seen, jurisdiction_id FROM devices;

-- name: upsert_device
INSERT INTO devices AS d (device_id, profile, kind, name, lat, lon, attributes, jurisdiction_id)
VALUES (%(device_id)s, %(profile)s, %(kind)s, %(name)s, %(lat)s, %(lon)s, %(attributes)s, %(jurisdiction)s)
ON CONFLICT (device_id) DO UPDATE
    SET profile = EXCLUDED.profile, kind = EXCLUDED.kind, name = EXCLUDED.name, lat = EXCLUDED.lat,
        lon = EXCLUDED.lon, attributes = EXCLUDED.attributes, jurisdiction_id = EXCLUDED.jurisdiction_id,
        updated_at = now();

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
SELECT device_id, profile, kind, name, lat, lon, attributes, last_f_cnt, last_seen, jurisdiction_id FROM devices
WHERE %(device_ids)s::text[] IS NULL OR device_id = ANY(%(device_ids)s::text[])
ORDER BY device_id;

-- name: open_device_incident
-- Opens the incident of a (rule, subject), or counts one more occurrence of the open one. The partial
-- unique index makes this safe between replicas. `created` tells which happened.
INSERT INTO incidents AS i (source, service_code, severity, title, description, rule_id, device_id, subject,
                            dedupe_key, lat, lon, address, first_seen_at, last_seen_at, attributes, jurisdiction_id,
                            channel)
VALUES ('device_rule', %(service_code)s, %(severity)s, %(title)s, %(description)s, %(rule_id)s, %(device_id)s,
        %(subject)s, %(dedupe_key)s, %(lat)s, %(lon)s, %(address)s, %(time)s, %(time)s, %(attributes)s,
        %(jurisdiction)s, 'device')
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
INSERT INTO rule_state (rule_id, subject, state, partition, updated_at) VALUES (%s, %s, %s, %s, now())
ON CONFLICT (rule_id, subject) DO UPDATE SET state = EXCLUDED.state, partition = EXCLUDED.partition,
                                             updated_at = now();

-- name: delete_rule_state
DELETE FROM rule_state WHERE rule_id = %s AND subject = %s;

-- name: all_rule_state
SELECT rule_id, subject, state FROM rule_state;

-- name: lock_incident
SELECT id, status, source, service_code, dedupe_key, linked_to, duplicate_of, organisation_id, rating FROM incidents
WHERE id = %(id)s FOR UPDATE;

-- name: set_incident_status
UPDATE incidents
SET status = %(status)s, updated_at = now(),
    resolved_at = CASE WHEN %(status)s = 'resolved' THEN now() WHEN %(status)s = 'open' THEN NULL ELSE resolved_at END,
    closed_at = CASE WHEN %(status)s = 'closed' THEN now() WHEN %(status)s = 'open' THEN NULL ELSE closed_at END,
    assigned_to = COALESCE(%(assignee)s, assigned_to)
WHERE id = %(id)s;

-- name: linked_open_reports
SELECT id, status FROM incidents
WHERE linked_to = %(id)s AND status NOT IN ('resolved', 'closed')
ORDER BY id FOR UPDATE;

-- name: insert_workflow_event
INSERT INTO incident_events (incident_id, kind, actor, from_status, to_status, note, data, public)
VALUES (%(incident_id)s, %(kind)s, %(actor)s, %(from_status)s, %(to_status)s, %(note)s, %(data)s, %(public)s)
RETURNING id;

-- name: mark_duplicate
UPDATE incidents SET duplicate_of = %(of)s, status = 'closed', closed_at = now(), updated_at = now()
WHERE id = %(id)s;

-- name: insert_report
INSERT INTO incidents (source, service_code, severity, title, description, lat, lon, address, first_seen_at,
                       last_seen_at, reporter, media_url, attributes, linked_to, jurisdiction_id, channel)
VALUES (%(source)s, %(service_code)s, 'minor', %(title)s, %(description)s, %(lat)s, %(lon)s, %(address)s, %(now)s,
        %(now)s, %(reporter)s, %(media_url)s, %(attributes)s, %(linked_to)s, %(jurisdiction)s, %(channel)s)
RETURNING id;

-- name: matching_device_incident
-- The open device incident a citizen's report is about: same service, within the distance (metres, an
-- equirectangular approximation that is exact enough at city scale), seen within the time window.
SELECT id, distance_m FROM (
    SELECT id, 111320.0 * sqrt(power(lat - %(lat)s, 2)
                               + power((lon - %(lon)s) * cos(radians(%(lat)s)), 2)) AS distance_m
    FROM incidents
    WHERE source = 'device_rule' AND service_code = %(service_code)s AND jurisdiction_id = %(jurisdiction)s
      AND status NOT IN ('resolved', 'closed') AND last_seen_at >= %(since)s
      AND lat IS NOT NULL AND lon IS NOT NULL
) near
WHERE distance_m <= %(distance_m)s
ORDER BY distance_m, id
LIMIT 1;

-- name: link_report
UPDATE incidents SET linked_to = %(to)s, updated_at = now() WHERE id = %(id)s AND linked_to IS NULL;

-- name: link_open_reports
-- The other way round from matching_device_incident: when a device incident opens, the open reports of
-- its service near it, made within the window before it and linked to nothing yet, are linked to it.
UPDATE incidents SET linked_to = %(incident_id)s, updated_at = now()
WHERE source <> 'device_rule' AND service_code = %(service_code)s AND linked_to IS NULL AND duplicate_of IS NULL
  AND jurisdiction_id = %(jurisdiction)s
  AND status NOT IN ('resolved', 'closed') AND first_seen_at >= %(since)s
  AND lat IS NOT NULL AND lon IS NOT NULL
  AND 111320.0 * sqrt(power(lat - %(lat)s, 2) + power((lon - %(lon)s) * cos(radians(%(lat)s)), 2)) <= %(distance_m)s
RETURNING id;

-- name: set_public_title
UPDATE incidents SET public_title = %(public_title)s, updated_at = now() WHERE id = %(id)s;

-- name: incident_by_id
SELECT * FROM incidents WHERE id = %(id)s;

-- name: incident_events
SELECT id, at, kind, actor, from_status, to_status, note, data, public FROM incident_events
WHERE incident_id = %(id)s AND (public OR NOT %(public_only)s)
ORDER BY id;

-- name: list_incidents
-- Staff listing; every filter is optional (NULL). `after_id` is the cursor: results go newest first.
SELECT * FROM incidents
WHERE (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  AND (%(source)s::text[] IS NULL OR source = ANY(%(source)s::text[]))
  AND (%(service_code)s::text[] IS NULL OR service_code = ANY(%(service_code)s::text[]))
  AND (%(device_id)s::text IS NULL OR device_id = %(device_id)s::text)
  AND (%(min_lon)s::float8 IS NULL OR lon BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8)
  AND (%(min_lat)s::float8 IS NULL OR lat BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8)
  AND (%(created_from)s::timestamptz IS NULL OR created_at >= %(created_from)s::timestamptz)
  AND (%(created_to)s::timestamptz IS NULL OR created_at < %(created_to)s::timestamptz)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
  AND (%(overdue)s::boolean IS NULL
       OR coalesce(resolve_by < %(now)s AND status NOT IN ('resolved', 'closed'), false) = %(overdue)s)
  AND (%(organisation)s::bigint IS NULL OR organisation_id = %(organisation)s::bigint)
  AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[]))
  AND jurisdiction_id = %(jurisdiction)s
  -- one citizen's reports, by their e-mail or phone (the digits), as staff look them up to call back
  AND (%(contact_email)s::text IS NULL OR lower(reporter ->> 'email') = %(contact_email)s::text
       -- the same number with or without its country code
       OR (%(contact_phone)s::text <> '' AND length(regexp_replace(reporter ->> 'phone', '\D', '', 'g')) >= 6
           AND (regexp_replace(reporter ->> 'phone', '\D', '', 'g') LIKE '%%' || %(contact_phone)s::text
                OR %(contact_phone)s::text LIKE '%%' || regexp_replace(reporter ->> 'phone', '\D', '', 'g'))))
ORDER BY id DESC
LIMIT %(limit)s;

-- name: open311_requests
-- Open311 GET requests: public fields only (the internal title stays out), of the public services only,
-- with the latest public note as status_notes. The notes rules write on device incidents are their
-- rendered descriptions (addresses, tags, plates): never public.
SELECT i.id, i.status, i.service_code, i.description, i.public_title, i.created_at, i.updated_at, i.address,
       i.lat, i.lon, i.media_url, i.source, notes.note AS status_notes, i.resolve_by, o.name AS agency
FROM incidents i
LEFT JOIN organisations o ON o.id = i.organisation_id
LEFT JOIN LATERAL (
    SELECT note FROM incident_events e
    WHERE e.incident_id = i.id AND e.public AND e.kind IN ('status', 'comment') AND e.note <> ''
      AND NOT (i.source = 'device_rule' AND starts_with(e.actor, 'rule:'))
    ORDER BY e.id DESC LIMIT 1
) notes ON true
WHERE i.service_code = ANY(%(public_codes)s::text[]) AND i.jurisdiction_id = %(jurisdiction)s
  AND (%(ids)s::bigint[] IS NULL OR i.id = ANY(%(ids)s::bigint[]))
  AND (%(service_code)s::text[] IS NULL OR i.service_code = ANY(%(service_code)s::text[]))
  AND (%(statuses)s::text[] IS NULL OR i.status = ANY(%(statuses)s::text[]))
  AND (%(start)s::timestamptz IS NULL OR i.created_at >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR i.created_at <= %(end)s::timestamptz)
  -- duplicates are hidden from listings, but answer when asked for by id
  AND (i.duplicate_of IS NULL OR %(ids)s::bigint[] IS NOT NULL)
ORDER BY i.id DESC
LIMIT %(limit)s;

-- name: request_updates
-- The FixMyStreet-style updates feed: public status changes and comments in a time range, of the public
-- services only, without the notes rules write on device incidents (as in open311_requests).
SELECT e.id, e.incident_id, e.at, e.to_status, i.status, i.media_url,
       CASE WHEN i.source = 'device_rule' AND starts_with(e.actor, 'rule:') THEN '' ELSE e.note END AS note
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
WHERE e.public AND e.kind IN ('created', 'status', 'comment') AND i.service_code = ANY(%(public_codes)s::text[])
  AND i.jurisdiction_id = %(jurisdiction)s
  AND (%(start)s::timestamptz IS NULL OR e.at >= %(start)s::timestamptz)
  AND (%(end)s::timestamptz IS NULL OR e.at <= %(end)s::timestamptz)
ORDER BY e.id
LIMIT %(limit)s;

-- name: incident_stats
-- Time to resolve runs from when the problem was seen to when it was resolved, both ends on one clock:
-- a device incident from its opening reading's device time (first_seen_at) to the resolving reading's
-- device time (resolved_at, as a rule sets it), so a backlog processed late measures what happened in the
-- street, not when the server caught up; a report from its creation to its resolution, both the
-- database's clock. A device incident staff resolve ends on the database's clock: device times are
-- accepted up to max_future_s ahead of it, and such an incident resolved within that counts as resolved
-- at once rather than in negative time. The period selects incidents by the same opening time.
-- Overdue: still open past its resolve_by (as of `now`), or resolved after it.
SELECT service_code, source, status, organisation, channel, count(*) AS incidents,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(0, extract(epoch FROM resolved_at - opened_at)))
           FILTER (WHERE resolved_at IS NOT NULL) AS median_resolve_s,
       count(*) FILTER (WHERE resolve_by < coalesce(resolved_at, closed_at, %(now)s)) AS overdue
FROM (
    SELECT i.service_code, i.source, i.status, i.resolved_at, i.closed_at, i.resolve_by,
           coalesce(o.slug, '') AS organisation, coalesce(i.channel, '') AS channel,
           CASE WHEN i.source = 'device_rule' THEN i.first_seen_at ELSE i.created_at END AS opened_at
    FROM incidents i LEFT JOIN organisations o ON o.id = i.organisation_id
    WHERE (%(organisations)s::bigint[] IS NULL OR i.organisation_id = ANY(%(organisations)s::bigint[]))
      AND i.jurisdiction_id = %(jurisdiction)s
) i
WHERE opened_at >= %(start)s AND opened_at < %(end)s
GROUP BY GROUPING SETS ((service_code), (source), (status), (organisation), (channel), ())
ORDER BY 1, 2, 3;

-- name: devices_overview
SELECT d.device_id, d.profile, d.kind, d.name, d.lat, d.lon, d.attributes, d.first_seen, d.last_seen,
       d.uplink_frames_lost, t.time AS reading_time, t.lat AS reading_lat, t.lon AS reading_lon,
       t.speed_kmh, t.fill_pct, t.temperature_c, t.battery_pct, t.tilted, t.event
FROM devices d
LEFT JOIN LATERAL (
    SELECT * FROM telemetry WHERE telemetry.device_id = d.device_id ORDER BY time DESC LIMIT 1
) t ON true
WHERE (%(kind)s::text IS NULL OR d.kind = %(kind)s::text)
  AND (%(device_id)s::text IS NULL OR d.device_id = %(device_id)s::text)
  AND d.jurisdiction_id = %(jurisdiction)s
ORDER BY d.device_id
LIMIT %(limit)s;

-- name: latest_positions
SELECT DISTINCT ON (d.device_id) d.device_id, d.kind, d.name, t.time, t.lat, t.lon, t.speed_kmh, t.heading_deg
FROM devices d
JOIN LATERAL (
    SELECT time, lat, lon, speed_kmh, heading_deg FROM telemetry
    WHERE telemetry.device_id = d.device_id AND lat IS NOT NULL ORDER BY time DESC LIMIT 1
) t ON true
WHERE d.jurisdiction_id = %(jurisdiction)s
ORDER BY d.device_id;

-- name: telemetry_count
SELECT count(*) FROM telemetry WHERE device_id = %(device_id)s AND time >= %(start)s AND time < %(end)s;

-- name: telemetry_range
SELECT time, lat, lon, speed_kmh, heading_deg, fill_pct, distance_mm, temperature_c, battery_pct, battery_v,
       tilted, weight_kg, rfid, event
FROM telemetry WHERE device_id = %(device_id)s AND time >= %(start)s AND time < %(end)s
ORDER BY time;

-- name: telemetry_downsampled
-- Averages per time bucket when a range holds more rows than asked for.
SELECT date_bin(%(bucket)s::interval, time, %(start)s) AS time, avg(lat) AS lat, avg(lon) AS lon,
       avg(speed_kmh) AS speed_kmh, max(fill_pct) AS fill_pct, avg(temperature_c) AS temperature_c,
       min(battery_pct) AS battery_pct, count(*) AS readings
FROM telemetry WHERE device_id = %(device_id)s AND time >= %(start)s AND time < %(end)s
GROUP BY 1 ORDER BY 1;

-- name: open_incidents_with_place
SELECT id, service_code, status, severity, title, source, lat, lon, created_at FROM incidents
WHERE status NOT IN ('resolved', 'closed') AND lat IS NOT NULL AND lon IS NOT NULL
  AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[]))
  AND jurisdiction_id = %(jurisdiction)s
ORDER BY id DESC LIMIT %(limit)s;

-- name: webhook_cursor
SELECT last_event_id FROM webhook_cursor WHERE url = %(url)s;

-- name: start_webhook_cursor
-- A new subscriber hears of what happens from now on, not of the whole history.
INSERT INTO webhook_cursor (url, last_event_id)
SELECT %(url)s, COALESCE(max(id), 0) FROM incident_events
ON CONFLICT (url) DO NOTHING;

-- name: advance_webhook_cursor
UPDATE webhook_cursor SET last_event_id = %(event_id)s, updated_at = now() WHERE url = %(url)s;

-- name: webhook_events
SELECT e.id AS event_id, e.at, e.kind, e.actor, e.from_status, e.to_status, e.note, e.public,
       i.id, i.source, i.service_code, i.status, i.severity, i.title, i.description, i.rule_id, i.device_id,
       i.lat, i.lon, i.address, i.occurrences, i.assigned_to, i.linked_to, i.duplicate_of, i.created_at,
       i.updated_at, o.slug AS organisation, i.priority, i.respond_by, i.resolve_by,
       (%(organisation_id)s::bigint IS NULL OR i.organisation_id = %(organisation_id)s::bigint) AS in_scope
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
LEFT JOIN organisations o ON o.id = i.organisation_id
WHERE e.id > %(after)s
ORDER BY e.id
LIMIT %(limit)s;

-- name: dead_letter_list
-- `wastegate deadletter list`, newest first; every filter is optional (NULL). A row a replay stored or
-- found to be no reading has left the dead letter and shows only with include_replayed.
SELECT id, received_at, reason, topic, detail, profile, device_id, payload_size, replayed_at, replay_outcome
FROM rejected_messages
WHERE (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
  AND (%(reasons)s::text[] IS NULL OR reason = ANY(%(reasons)s::text[]))
  AND (%(topic_prefix)s::text IS NULL OR starts_with(topic, %(topic_prefix)s::text))
  AND (%(topic_regex)s::text IS NULL OR topic ~ %(topic_regex)s::text)
  AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR received_at < %(until)s::timestamptz)
  AND (%(include_replayed)s::boolean OR replay_outcome IS NULL OR replay_outcome = 'rejected')
ORDER BY id DESC
LIMIT %(limit)s;

-- name: dead_letter_for_replay
-- The next rows still in the dead letter, oldest first, with the same filters as dead_letter_list. Locked
-- until the replay has committed their readings and outcomes; rows another replay holds are skipped.
SELECT id, received_at, topic, payload, payload_size, reason
FROM rejected_messages
WHERE (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
  AND (%(reasons)s::text[] IS NULL OR reason = ANY(%(reasons)s::text[]))
  AND (%(topic_prefix)s::text IS NULL OR starts_with(topic, %(topic_prefix)s::text))
  AND (%(topic_regex)s::text IS NULL OR topic ~ %(topic_regex)s::text)
  AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR received_at < %(until)s::timestamptz)
  AND (replay_outcome IS NULL OR replay_outcome = 'rejected')
  AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: dead_letter_replayed
UPDATE rejected_messages SET replayed_at = %(at)s, replay_outcome = %(outcome)s WHERE id = %(id)s;

-- name: dead_letter_rejected_again
-- The message stays in the dead letter, in its one row, with the reason it failed this time.
UPDATE rejected_messages
SET replayed_at = %(at)s, replay_outcome = 'rejected', reason = %(reason)s, detail = %(detail)s,
    profile = %(profile)s, device_id = %(device_id)s
WHERE id = %(id)s;

-- name: insert_user
INSERT INTO users (name, password_hash, role, language, jurisdiction_id)
VALUES (%(name)s, %(password_hash)s, %(role)s, %(language)s, %(jurisdiction)s)
ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,
    language = EXCLUDED.language, jurisdiction_id = EXCLUDED.jurisdiction_id, disabled = false
RETURNING id, (xmax = 0) AS created;

-- name: user_by_name
SELECT id, name, password_hash, role, language, disabled FROM users WHERE name = %(name)s;

-- name: insert_console_session
INSERT INTO console_sessions (token_hash, user_id, csrf_token, expires_at)
VALUES (%(token_hash)s, %(user_id)s, %(csrf_token)s, %(expires_at)s);

-- name: console_session_user
-- The user of a live session; expired sessions and disabled users sign nobody in.
SELECT u.id, u.name, u.password_hash, u.role, u.language, u.disabled, s.csrf_token, u.jurisdiction_id
FROM console_sessions s JOIN users u ON u.id = s.user_id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > %(now)s AND NOT u.disabled;

-- name: delete_console_session
DELETE FROM console_sessions WHERE token_hash = %(token_hash)s;

-- name: delete_expired_console_sessions
DELETE FROM console_sessions WHERE expires_at <= %(now)s;

-- name: set_user_language
UPDATE users SET language = %(language)s WHERE id = %(id)s;

-- name: console_trucks
-- Each truck's latest position and its trail of the 15 minutes before it (device time).
SELECT d.device_id, coalesce(d.name, d.device_id) AS name, t.time, t.lat, t.lon, t.speed_kmh, t.heading_deg,
    (SELECT coalesce(json_agg(json_build_array(x.lat, x.lon) ORDER BY x.time), '[]'::json) FROM telemetry x
     WHERE x.device_id = d.device_id AND x.lat IS NOT NULL
       AND x.time > t.time - interval '15 minutes' AND x.time <= t.time) AS trail
FROM devices d
JOIN LATERAL (
    SELECT time, lat, lon, speed_kmh, heading_deg FROM telemetry
    WHERE telemetry.device_id = d.device_id AND lat IS NOT NULL ORDER BY time DESC LIMIT 1
) t ON true
WHERE d.kind = 'truck' AND (%(device_ids)s::text[] IS NULL OR d.device_id = ANY(%(device_ids)s::text[]))
  AND d.jurisdiction_id = %(jurisdiction)s;

-- name: console_containers
-- Fixed devices at their registered place with their latest values (each from the newest row that has it).
SELECT d.device_id, coalesce(d.name, d.device_id) AS name, d.kind, d.lat, d.lon, d.last_seen,
    (SELECT fill_pct FROM telemetry x WHERE x.device_id = d.device_id AND fill_pct IS NOT NULL
     ORDER BY time DESC LIMIT 1) AS fill_pct,
    (SELECT battery_pct FROM telemetry x WHERE x.device_id = d.device_id AND battery_pct IS NOT NULL
     ORDER BY time DESC LIMIT 1) AS battery_pct,
    (SELECT tilted FROM telemetry x WHERE x.device_id = d.device_id AND tilted IS NOT NULL
     ORDER BY time DESC LIMIT 1) AS tilted,
    (SELECT time FROM telemetry x WHERE x.device_id = d.device_id ORDER BY time DESC LIMIT 1) AS reading_time,
    d.profile, d.attributes->'expected_interval_s' AS expected_interval_s
FROM devices d
WHERE d.kind NOT IN ('truck', 'household') AND d.lat IS NOT NULL AND d.lon IS NOT NULL
  AND (%(device_ids)s::text[] IS NULL OR d.device_id = ANY(%(device_ids)s::text[]))
  AND d.jurisdiction_id = %(jurisdiction)s;

-- name: console_open_incidents_by_device
SELECT device_id, array_agg(DISTINCT service_code ORDER BY service_code) AS service_codes FROM incidents
WHERE status NOT IN ('resolved', 'closed') AND device_id IS NOT NULL AND jurisdiction_id = %(jurisdiction)s
GROUP BY device_id;

-- name: console_devices_seen_since
SELECT device_id, kind FROM devices WHERE last_seen > %(since)s AND jurisdiction_id = %(jurisdiction)s;

-- name: console_incidents_changed_since
-- Incidents with an event after the cursor, as they are now, and the new cursor.
SELECT i.id, i.service_code, i.status, i.severity, i.title, i.source, i.lat, i.lon, i.created_at, e.last_event
FROM (SELECT incident_id, max(id) AS last_event FROM incident_events WHERE id > %(after)s GROUP BY incident_id) e
JOIN incidents i ON i.id = e.incident_id
WHERE (%(organisations)s::bigint[] IS NULL OR i.organisation_id = ANY(%(organisations)s::bigint[]))
  AND i.jurisdiction_id = %(jurisdiction)s
ORDER BY e.last_event;

-- name: console_last_event_id
SELECT coalesce(max(id), 0) FROM incident_events;

-- name: console_incidents
-- The console's queue: every filter optional (NULL); sorted by one of a fixed set of orders.
SELECT i.id, i.source, i.service_code, i.status, i.severity, i.title, i.device_id, i.address, i.assigned_to,
       i.occurrences, i.created_at, i.updated_at, i.first_seen_at, i.lat, i.lon, i.linked_to, i.priority,
       i.resolve_by, o.name AS organisation,
       (i.resolve_by < %(now)s AND i.status NOT IN ('resolved', 'closed')) AS overdue
FROM incidents i LEFT JOIN organisations o ON o.id = i.organisation_id
WHERE (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  AND (%(organisations)s::bigint[] IS NULL OR i.organisation_id = ANY(%(organisations)s::bigint[]))
  AND i.jurisdiction_id = %(jurisdiction)s
  AND (%(organisation)s::bigint IS NULL OR i.organisation_id = %(organisation)s::bigint)
  AND (NOT %(overdue)s::boolean OR (i.resolve_by < %(now)s AND i.status NOT IN ('resolved', 'closed')))
  -- one citizen's reports (operators), as list_incidents finds them
  AND (%(contact_email)s::text IS NULL OR lower(i.reporter ->> 'email') = %(contact_email)s::text
       OR (%(contact_phone)s::text <> '' AND length(regexp_replace(i.reporter ->> 'phone', '\D', '', 'g')) >= 6
           AND (regexp_replace(i.reporter ->> 'phone', '\D', '', 'g') LIKE '%%' || %(contact_phone)s::text
                OR %(contact_phone)s::text LIKE '%%' || regexp_replace(i.reporter ->> 'phone', '\D', '', 'g'))))
  AND (%(service_code)s::text IS NULL OR service_code = %(service_code)s::text)
  AND (%(source)s::text IS NULL OR source = %(source)s::text)
  AND (%(assignee)s::text IS NULL OR assigned_to ILIKE '%%' || %(assignee)s::text || '%%')
  AND (%(created_from)s::timestamptz IS NULL OR i.created_at >= %(created_from)s::timestamptz)
  AND (%(text)s::text IS NULL OR title ILIKE '%%' || %(text)s::text || '%%' OR address ILIKE '%%' || %(text)s::text || '%%')
  -- a district: its outline's polygons (PostgreSQL's own geometric types; lon as x, lat as y)
  AND (%(district)s::polygon[] IS NULL OR (lat IS NOT NULL AND point(lon, lat) <@ ANY(%(district)s::polygon[])))
-- ORDER_BY is one of a fixed set of orders the caller substitutes (gateway/console/pages/incidents.py):
-- a plain `id DESC` for the default lets PostgreSQL walk the primary key and stop after a page.
ORDER BY ORDER_BY
LIMIT %(limit)s OFFSET %(offset)s;

-- name: console_incident_counts
-- Kept by a trigger on incidents (migration 0008): no count over the whole table per request.
SELECT status, n FROM incident_status_counts WHERE n > 0;

-- name: console_incident_counts_in_scope
-- For a partner's members (their organisations' incidents only), and on an instance of several
-- municipalities (each its own): a count over those, by their indexes.
SELECT status, count(*) AS n FROM incidents
WHERE jurisdiction_id = %(jurisdiction)s
  AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[]))
GROUP BY status;

-- name: console_linked_reports
SELECT id, source, status, title, created_at, media_url FROM incidents
WHERE linked_to = %(id)s AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[]))
  AND jurisdiction_id = %(jurisdiction)s
ORDER BY id;

-- name: console_readings_around
-- A device's readings around a time, for the chart of an incident's evidence.
SELECT time, fill_pct, temperature_c, battery_pct, speed_kmh, distance_mm, tilted FROM telemetry
WHERE device_id = %(device_id)s AND time BETWEEN %(start)s AND %(end)s
ORDER BY time LIMIT 2000;

-- name: console_devices
-- The device list: each device with its newest reading (device time) and, per field, the newest value.
SELECT d.device_id, d.profile, d.kind, d.name, d.attributes, d.last_seen, t.time AS reading_time,
       t.fill_pct, t.battery_pct, t.temperature_c, t.speed_kmh
FROM devices d
LEFT JOIN LATERAL (
    SELECT time, fill_pct, battery_pct, temperature_c, speed_kmh FROM telemetry
    WHERE telemetry.device_id = d.device_id ORDER BY time DESC LIMIT 1
) t ON true
WHERE (%(kind)s::text IS NULL OR d.kind = %(kind)s::text) AND d.jurisdiction_id = %(jurisdiction)s
  AND (%(text)s::text IS NULL OR d.device_id ILIKE '%%' || %(text)s::text || '%%'
       OR d.name ILIKE '%%' || %(text)s::text || '%%')
ORDER BY d.device_id
LIMIT %(limit)s;

-- name: console_device_kinds
SELECT kind, count(*) AS n FROM devices WHERE jurisdiction_id = %(jurisdiction)s GROUP BY kind ORDER BY kind;

-- name: console_route
-- A truck's positions over a day, thinned to one per bucket, for the replay on the map.
SELECT date_bin(%(bucket)s::interval, time, %(start)s) AS time, avg(lat) AS lat, avg(lon) AS lon,
       max(speed_kmh) AS speed_kmh
FROM telemetry
WHERE device_id = %(device_id)s AND time >= %(start)s AND time < %(end)s AND lat IS NOT NULL
GROUP BY 1 ORDER BY 1;

-- name: console_lifts
SELECT time, lat, lon, rfid, weight_kg FROM telemetry
WHERE device_id = %(device_id)s AND time >= %(start)s AND time < %(end)s AND event = 'bin_lift'
ORDER BY time LIMIT 5000;

-- name: console_stats_per_day
-- Incidents opened and resolved per day (UTC days) in [start, end), on the clock incident_stats uses.
WITH days AS (
    SELECT d::date AS day FROM generate_series(date_trunc('day', %(start)s::timestamptz),
                                               %(end)s::timestamptz - interval '1 second', interval '1 day') d
), opened AS (
    SELECT (CASE WHEN source = 'device_rule' THEN first_seen_at ELSE created_at END)::date AS day, count(*) AS n
    FROM incidents
    WHERE (CASE WHEN source = 'device_rule' THEN first_seen_at ELSE created_at END) >= %(start)s
      AND (CASE WHEN source = 'device_rule' THEN first_seen_at ELSE created_at END) < %(end)s
      AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[]))
      AND jurisdiction_id = %(jurisdiction)s
    GROUP BY 1
), resolved AS (
    SELECT resolved_at::date AS day, count(*) AS n FROM incidents
    WHERE resolved_at >= %(start)s AND resolved_at < %(end)s AND jurisdiction_id = %(jurisdiction)s
      AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[])) GROUP BY 1
)
SELECT days.day, coalesce(opened.n, 0) AS opened, coalesce(resolved.n, 0) AS resolved
FROM days LEFT JOIN opened USING (day) LEFT JOIN resolved USING (day)
ORDER BY 1;

-- name: console_stats_incidents
-- The incidents of a period with what the breakdowns need (district is worked out from the position).
SELECT service_code, source, lat, lon, organisation_id,
       (resolve_by < coalesce(resolved_at, closed_at, %(now)s)) AS overdue,
       CASE WHEN resolved_at IS NULL THEN NULL ELSE greatest(0, extract(epoch FROM resolved_at -
           CASE WHEN source = 'device_rule' THEN first_seen_at ELSE created_at END)) END AS resolve_s
FROM incidents
WHERE (CASE WHEN source = 'device_rule' THEN first_seen_at ELSE created_at END) >= %(start)s
  AND (CASE WHEN source = 'device_rule' THEN first_seen_at ELSE created_at END) < %(end)s
  AND (%(organisations)s::bigint[] IS NULL OR organisation_id = ANY(%(organisations)s::bigint[]))
  AND jurisdiction_id = %(jurisdiction)s
LIMIT 200000;

-- name: console_stats_fill
-- The latest fill level of each container, in tens of percent.
SELECT least(width_bucket(f.fill_pct, 0, 100, 10), 10) AS bucket, count(*) AS containers
FROM devices d
CROSS JOIN LATERAL (
    SELECT fill_pct FROM telemetry x WHERE x.device_id = d.device_id AND fill_pct IS NOT NULL
    ORDER BY time DESC LIMIT 1
) f
WHERE d.kind = 'container' AND d.jurisdiction_id = %(jurisdiction)s
GROUP BY 1 ORDER BY 1;

-- name: console_stats_collections
-- Bin lifts and missed collections per day in [start, end).
WITH days AS (
    SELECT d::date AS day FROM generate_series(date_trunc('day', %(start)s::timestamptz),
                                               %(end)s::timestamptz - interval '1 second', interval '1 day') d
), lifted AS (
    SELECT time::date AS day, count(*) AS n FROM telemetry
    WHERE event = 'bin_lift' AND time >= %(start)s AND time < %(end)s
      AND device_id IN (SELECT device_id FROM devices WHERE jurisdiction_id = %(jurisdiction)s) GROUP BY 1
), missed AS (
    SELECT first_seen_at::date AS day, count(*) AS n FROM incidents
    WHERE service_code = 'missed_collection' AND first_seen_at >= %(start)s AND first_seen_at < %(end)s
      AND jurisdiction_id = %(jurisdiction)s GROUP BY 1
)
SELECT days.day, coalesce(lifted.n, 0) AS lifted, coalesce(missed.n, 0) AS missed
FROM days LEFT JOIN lifted USING (day) LEFT JOIN missed USING (day)
ORDER BY 1;

-- name: stored_readings
-- One stretch of history for the rule lab, in device-time order (ties by device, then message): the
-- columns in the order of a Reading's fields. Read through a server-side cursor, a stretch at a time.
SELECT device_id, time, received_at, message_key, profile, lat, lon, speed_kmh, heading_deg, fill_pct,
       distance_mm, temperature_c, battery_pct, battery_v, tilted, weight_kg, rfid, event, extra
FROM telemetry
WHERE time >= %(since)s AND time < %(until)s
  AND (%(device_ids)s::text[] IS NULL OR device_id = ANY(%(device_ids)s::text[]))
  AND (%(events)s::text[] IS NULL OR event = ANY(%(events)s::text[]))
  -- one share of the devices, for a backtest split over processes
  AND (%(shares)s::int IS NULL OR abs(hashtext(device_id)::bigint) %% %(shares)s::int = %(share)s::int)
ORDER BY time, device_id, message_key;

-- name: devices_of_kinds
SELECT device_id FROM devices WHERE kind = ANY(%(kinds)s::text[]) ORDER BY device_id;

-- name: devices_in_box
-- Devices registered inside the box, or with a position inside it during the range.
SELECT device_id FROM devices
WHERE lat BETWEEN %(south)s AND %(north)s AND lon BETWEEN %(west)s AND %(east)s
UNION
SELECT DISTINCT device_id FROM telemetry
WHERE time >= %(since)s AND time < %(until)s
  AND lat BETWEEN %(south)s AND %(north)s AND lon BETWEEN %(west)s AND %(east)s
ORDER BY device_id;

-- name: history_has_readings
SELECT EXISTS (SELECT 1 FROM telemetry WHERE time >= %(since)s AND time < %(until)s);

-- name: latest_telemetry_time
SELECT max(time) FROM telemetry;

-- name: rule_incidents_in_range
-- The incidents rules opened in a range, or opened before it and still open at its start, for the rule
-- lab's comparison with what the store holds; `closed_by_staff` when a person, not the rule, ended it.
SELECT i.id, i.rule_id, i.subject, i.service_code, i.severity, i.title, i.first_seen_at, i.resolved_at,
       i.occurrences, i.device_id, i.lat, i.lon,
       i.status IN ('resolved', 'closed') AND NOT EXISTS (
           SELECT 1 FROM incident_events e
           WHERE e.incident_id = i.id AND e.kind = 'status' AND e.to_status = 'resolved' AND e.actor LIKE 'rule:%%'
       ) AS closed_by_staff
FROM incidents i
WHERE i.source = 'device_rule' AND i.rule_id = ANY(%(rule_ids)s::text[]) AND i.first_seen_at < %(until)s
  AND (i.first_seen_at >= %(since)s OR i.resolved_at IS NULL OR i.resolved_at >= %(since)s)
ORDER BY i.first_seen_at, i.id;

-- The city's organisation ------------------------------------------------------------------------------

-- name: seed_organisation
-- From organisations.yaml: added when missing; one that exists keeps what the console and the CLI made it.
INSERT INTO organisations (slug, name, kind, emails, webhook_url, jurisdiction_id)
VALUES (%(slug)s, %(name)s, %(kind)s, %(emails)s, %(webhook_url)s, %(jurisdiction)s)
ON CONFLICT (jurisdiction_id, slug) DO NOTHING
RETURNING id;

-- name: insert_organisation
INSERT INTO organisations (slug, name, kind, emails, webhook_url, jurisdiction_id)
VALUES (%(slug)s, %(name)s, %(kind)s, %(emails)s, %(webhook_url)s, %(jurisdiction)s)
ON CONFLICT (jurisdiction_id, slug) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, emails = EXCLUDED.emails,
    webhook_url = COALESCE(EXCLUDED.webhook_url, organisations.webhook_url)
RETURNING id, (xmax = 0) AS created;

-- name: all_organisations
SELECT id, slug, name, kind, emails, webhook_url, jurisdiction_id FROM organisations ORDER BY jurisdiction_id, slug;

-- name: set_organisation_member
INSERT INTO organisation_members (organisation_id, user_id, role)
SELECT o.id, u.id, %(role)s FROM organisations o, users u
WHERE o.slug = %(slug)s AND u.name = %(user)s AND o.jurisdiction_id = %(jurisdiction)s
  AND u.jurisdiction_id = %(jurisdiction)s
ON CONFLICT (organisation_id, user_id) DO UPDATE SET role = EXCLUDED.role
RETURNING organisation_id;

-- name: remove_organisation_member
DELETE FROM organisation_members m USING organisations o, users u
WHERE m.organisation_id = o.id AND m.user_id = u.id AND o.slug = %(slug)s AND u.name = %(user)s
  AND o.jurisdiction_id = %(jurisdiction)s
RETURNING m.organisation_id;

-- name: organisation_members
SELECT o.slug, u.name, m.role FROM organisation_members m
JOIN organisations o ON o.id = m.organisation_id JOIN users u ON u.id = m.user_id
WHERE %(jurisdiction)s::text IS NULL OR o.jurisdiction_id = %(jurisdiction)s::text
ORDER BY o.slug, u.name;

-- name: users_of_jurisdiction
SELECT name FROM users WHERE jurisdiction_id = %(jurisdiction)s AND NOT disabled ORDER BY name;

-- name: user_memberships
SELECT o.id, o.slug, o.kind, m.role FROM organisation_members m JOIN organisations o ON o.id = m.organisation_id
WHERE m.user_id = %(user_id)s ORDER BY o.id;

-- name: route_incident
UPDATE incidents SET organisation_id = %(organisation_id)s, priority = %(priority)s, respond_by = %(respond_by)s,
    resolve_by = %(resolve_by)s
WHERE id = %(id)s;

-- name: incident_organisation
SELECT organisation_id, jurisdiction_id FROM incidents WHERE id = %(id)s;

-- name: reassign_incident
UPDATE incidents SET organisation_id = %(organisation_id)s, updated_at = now() WHERE id = %(id)s;

-- E-mail ----------------------------------------------------------------------------------------------

-- name: lock_mail_cursor
-- One composer at a time, whichever replica: the row is locked until the transaction that read past it
-- commits its mail and the new position. A new database starts from now, not from the whole history.
INSERT INTO mail_cursor (name, last_event_id) SELECT 'mail', COALESCE(max(id), 0) FROM incident_events
ON CONFLICT (name) DO NOTHING;

-- name: mail_cursor_for_update
SELECT last_event_id FROM mail_cursor WHERE name = 'mail' FOR UPDATE;

-- name: advance_mail_cursor
UPDATE mail_cursor SET last_event_id = %(event_id)s, updated_at = now() WHERE name = 'mail';

-- name: mail_events
-- The events mail may follow from, with what the messages need. The reporter's address is read here and
-- goes only into the recipients of their own messages.
SELECT e.id AS event_id, e.kind, e.from_status, e.to_status, e.note, e.public, e.data, e.actor,
       i.id, i.source, i.service_code, i.status, i.title, i.description, i.address, i.lat, i.lon, i.priority,
       i.respond_by, i.resolve_by, i.created_at, i.reporter ->> 'email' AS reporter_email,
       o.id AS organisation_id, o.name AS organisation_name, o.emails AS organisation_emails, i.jurisdiction_id,
       co.id AS current_organisation_id, co.name AS current_organisation_name,
       co.emails AS current_organisation_emails
FROM incident_events e JOIN incidents i ON i.id = e.incident_id
LEFT JOIN organisations co ON co.id = i.organisation_id
-- an assignment's organisation is the one the event names (the incident may have moved on since)
LEFT JOIN organisations o ON o.slug = e.data ->> 'organisation' AND e.kind = 'assignment'
    AND o.jurisdiction_id = i.jurisdiction_id
WHERE e.id > %(after)s
ORDER BY e.id
LIMIT %(limit)s;

-- name: insert_mail
INSERT INTO mail_outbox (kind, incident_id, organisation_id, recipients, subject, body_text, body_html)
VALUES (%(kind)s, %(incident_id)s, %(organisation_id)s, %(recipients)s, %(subject)s, %(body_text)s, %(body_html)s);

-- name: mail_due
-- The next messages to send; SKIP LOCKED so that replicas share the outbox without sending one twice.
SELECT id, recipients, subject, body_text, body_html, attempts, created_at FROM mail_outbox
WHERE status = 'pending' AND next_attempt_at <= %(now)s
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: mail_sent
UPDATE mail_outbox SET status = 'sent', sent_at = %(now)s, attempts = attempts + 1, refused = %(refused)s,
    last_error = NULL
WHERE id = %(id)s;

-- name: mail_failed
-- Given up: refused for good by the server, or retried for too long. Kept, with the reason, to be shown.
UPDATE mail_outbox SET status = 'failed', attempts = attempts + 1, last_error = %(error)s, refused = %(refused)s
WHERE id = %(id)s;

-- name: mail_retry_later
UPDATE mail_outbox SET attempts = attempts + 1, last_error = %(error)s, next_attempt_at = %(next_attempt_at)s
WHERE id = %(id)s;

-- name: instance_secret
SELECT value FROM instance_secrets WHERE name = %(name)s;

-- name: overdue_by_organisation
-- Open incidents past their resolve_by, per organisation with an address, for the daily digest.
SELECT o.id AS organisation_id, o.name AS organisation_name, o.emails AS organisation_emails,
       o.jurisdiction_id, i.id, i.service_code, i.title, i.address, i.resolve_by
FROM incidents i JOIN organisations o ON o.id = i.organisation_id
WHERE i.resolve_by < %(now)s AND i.status NOT IN ('resolved', 'closed') AND cardinality(o.emails) > 0
ORDER BY o.id, i.resolve_by, i.id;

-- name: claim_digest
INSERT INTO mail_digests (organisation_id, day) VALUES (%(organisation_id)s, %(day)s)
ON CONFLICT DO NOTHING
RETURNING organisation_id;

-- name: mail_outbox_list
SELECT id, created_at, kind, incident_id, recipients, subject, status, attempts, last_error, refused, sent_at
FROM mail_outbox
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- name: followed_report
-- What the reporter's follow page shows of their report: its public fields only.
SELECT id, service_code, status, description, address, created_at, updated_at, jurisdiction_id, rating,
       rating_comment, rated_at
FROM incidents
WHERE id = %(id)s AND source = 'citizen';

-- name: followed_report_notes
-- Its public history, and what the reporter wrote (internal to staff, but theirs to see).
SELECT at, to_status, note, actor = 'reporter' AS from_reporter,
       CASE WHEN actor = 'reporter' OR public THEN data ->> 'photo_url' END AS photo_url
FROM incident_events
WHERE incident_id = %(id)s
  AND ((public AND kind IN ('created', 'status', 'comment')) OR (actor = 'reporter' AND kind IN ('comment', 'rating')))
ORDER BY id;

-- Photos -----------------------------------------------------------------------------------------------

-- name: insert_photo
INSERT INTO photos (incident_id, token, content_type, width, height, image, thumbnail)
VALUES (%(incident_id)s, %(token)s, %(content_type)s, %(width)s, %(height)s, %(image)s, %(thumbnail)s);

-- name: photo_by_token
-- A photo as served publicly: never a hidden one.
SELECT content_type, image, thumbnail FROM photos WHERE token = %(token)s AND NOT hidden;

-- name: hide_photos
UPDATE photos SET hidden = true, hidden_reason = %(reason)s WHERE incident_id = %(incident_id)s AND NOT hidden
RETURNING token;

-- name: clear_media_url
UPDATE incidents SET media_url = NULL, updated_at = now() WHERE id = %(id)s;

-- The reporter's side ----------------------------------------------------------------------------------

-- name: reporter_of
SELECT source, lower(reporter ->> 'email') AS email, jurisdiction_id, service_code FROM incidents WHERE id = %(id)s;

-- name: rate_incident
UPDATE incidents SET rating = %(rating)s, rating_comment = %(comment)s, rated_at = %(at)s, updated_at = now()
WHERE id = %(id)s;

-- name: rating_stats
-- The quality measure: ratings given in [start, end), per category, organisation and month.
SELECT i.service_code, coalesce(o.slug, '') AS organisation, to_char(i.rated_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
       count(*) AS ratings, round(avg(i.rating), 2)::float8 AS average
FROM incidents i LEFT JOIN organisations o ON o.id = i.organisation_id
WHERE i.rated_at >= %(start)s AND i.rated_at < %(end)s AND i.jurisdiction_id = %(jurisdiction)s
  AND (%(organisations)s::bigint[] IS NULL OR i.organisation_id = ANY(%(organisations)s::bigint[]))
GROUP BY GROUPING SETS ((i.service_code), (coalesce(o.slug, '')), (to_char(i.rated_at AT TIME ZONE 'UTC', 'YYYY-MM')))
ORDER BY 1, 2, 3;

-- name: acquire_lease
-- Takes the lease when it is free, expired or already ours, and keeps it until `ttl_s` from now (the
-- database's clock, the same for every replica). The epoch grows each time it changes hands. No row: held
-- by another replica.
INSERT INTO leases AS l (name, holder, epoch, expires_at)
VALUES (%(name)s, %(holder)s, 1, clock_timestamp() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (name) DO UPDATE
    SET holder = EXCLUDED.holder,
        epoch = CASE WHEN l.holder IS NOT DISTINCT FROM EXCLUDED.holder THEN l.epoch ELSE l.epoch + 1 END,
        acquired_at = CASE WHEN l.holder IS NOT DISTINCT FROM EXCLUDED.holder THEN l.acquired_at ELSE clock_timestamp() END,
        expires_at = EXCLUDED.expires_at
    WHERE l.holder IS NOT DISTINCT FROM EXCLUDED.holder OR l.holder IS NULL OR l.expires_at < clock_timestamp()
RETURNING epoch;

-- name: release_lease
UPDATE leases SET holder = NULL, expires_at = clock_timestamp() WHERE name = %(name)s AND holder = %(holder)s;

-- name: lease_holder
SELECT holder, epoch, expires_at FROM leases WHERE name = %s;

-- name: lock_fences
-- The leases a commit is made under, locked until it commits: a replica taking one over waits for it.
SELECT name, holder, epoch FROM leases WHERE name = ANY(%s) ORDER BY name FOR SHARE;

-- name: replica_heartbeat
INSERT INTO replicas (replica_id, heartbeat_at) VALUES (%s, now())
ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now();

-- name: replica_gone
DELETE FROM replicas WHERE replica_id = %s;

-- name: live_replicas
SELECT replica_id FROM replicas WHERE heartbeat_at > now() - make_interval(secs => %s) ORDER BY replica_id;

-- name: sweep_last_readings
-- What silence is judged on: each device's latest reading, in device time, as committed by any replica.
SELECT device_id, last_reading_at FROM devices WHERE last_reading_at IS NOT NULL;

-- name: sweep_first_readings_after
-- For each (device, since): the device time of its first reading after `since`.
SELECT q.device_id,
       (SELECT min(t.time) FROM telemetry t WHERE t.device_id = q.device_id AND t.time > q.since)
FROM unnest(%s::text[], %s::timestamptz[]) AS q(device_id, since);

-- name: sweep_lifts_since
-- For each (tag, since): that tag's bin lifts since then, by any truck, as committed by any replica.
SELECT q.tag, t.time, t.device_id
FROM unnest(%s::text[], %s::timestamptz[]) AS q(tag, since)
JOIN telemetry t ON t.rfid = q.tag AND t.event = 'bin_lift' AND t.time >= q.since
ORDER BY q.tag, t.time;

-- name: take_dead_lease
-- Takes over a lease from a holder known to be dead (a crashed process of this host) without waiting
-- for it to expire.
UPDATE leases SET holder = %(holder)s, epoch = epoch + 1, acquired_at = clock_timestamp(),
                  expires_at = clock_timestamp() + make_interval(secs => %(ttl_s)s)
WHERE name = %(name)s AND holder = %(dead)s
RETURNING epoch;

-- name: rule_states_of
SELECT rule_id, subject, state FROM rule_state WHERE rule_id = ANY(%s);

-- name: rule_states_of_partition
SELECT rule_id, subject, state FROM rule_state WHERE partition = %s;

-- The collection ledger -------------------------------------------------------------------------------

-- name: ledger_readings_received
-- The trucks' readings received since a time (the live ledger; `late` bounds how far back in device time an
-- upload may reach), in receiving order.
SELECT t.device_id, t.time, t.lat, t.lon, t.rfid, t.event, t.weight_kg, t.received_at, t.message_key
FROM telemetry t
WHERE t.received_at >= %(since)s AND t.time >= %(oldest)s
  -- the next page: after the last row of the previous one
  AND (%(after)s::text IS NULL
       OR (t.received_at, t.device_id, t.time, t.message_key) > (%(since)s, %(after)s, %(after_time)s, %(after_key)s))
  AND (t.lat IS NOT NULL OR t.event IS NOT NULL)
  AND t.device_id IN (SELECT device_id FROM devices WHERE kind = 'truck' AND jurisdiction_id = %(jurisdiction)s)
ORDER BY t.received_at, t.device_id, t.time, t.message_key
LIMIT %(limit)s;

-- name: ledger_readings_between
-- The trucks' readings of a stretch of device time (a rebuild, a lookup).
SELECT t.device_id, t.time, t.lat, t.lon, t.rfid, t.event, t.weight_kg, t.received_at
FROM telemetry t
WHERE t.time >= %(start)s AND t.time < %(end)s
  AND (t.lat IS NOT NULL OR t.event IS NOT NULL)
  AND (%(south)s::float8 IS NULL OR (t.lat BETWEEN %(south)s AND %(north)s AND t.lon BETWEEN %(west)s AND %(east)s)
       OR t.rfid = %(tag)s)
  AND t.device_id IN (SELECT device_id FROM devices WHERE kind = 'truck' AND jurisdiction_id = %(jurisdiction)s)
ORDER BY t.time, t.device_id;

-- name: ledger_rows
SELECT stop_id, day, scheduled, lift_at, lift_truck, lift_lat, lift_lon, lift_weight_kg, passed_at, passed_truck,
       not_out_at, not_out_truck
FROM collection_ledger
WHERE jurisdiction_id = %(jurisdiction)s AND day >= %(first)s AND day <= %(last)s
  AND (%(stop_ids)s::text[] IS NULL OR stop_id = ANY(%(stop_ids)s::text[]))
ORDER BY day, stop_id;

-- name: ledger_upsert
INSERT INTO collection_ledger (jurisdiction_id, stop_id, day, scheduled, lift_at, lift_truck, lift_lat, lift_lon,
                               lift_weight_kg, passed_at, passed_truck, not_out_at, not_out_truck, updated_at)
VALUES (%(jurisdiction)s, %(stop_id)s, %(day)s, %(scheduled)s, %(lift_at)s, %(lift_truck)s, %(lift_lat)s,
        %(lift_lon)s, %(lift_weight_kg)s, %(passed_at)s, %(passed_truck)s, %(not_out_at)s, %(not_out_truck)s, now())
ON CONFLICT (jurisdiction_id, day, stop_id) DO UPDATE SET
    scheduled = excluded.scheduled, lift_at = excluded.lift_at, lift_truck = excluded.lift_truck,
    lift_lat = excluded.lift_lat, lift_lon = excluded.lift_lon, lift_weight_kg = excluded.lift_weight_kg,
    passed_at = excluded.passed_at, passed_truck = excluded.passed_truck, not_out_at = excluded.not_out_at,
    not_out_truck = excluded.not_out_truck, updated_at = now();

-- name: ledger_delete_days
DELETE FROM collection_ledger WHERE jurisdiction_id = %(jurisdiction)s AND day >= %(first)s AND day <= %(last)s;

-- name: ledger_lock_progress
-- The live ledger's progress, locked for the round's page (or a rebuild): one writer at a time. A first
-- round starts `late` before now.
WITH created AS (
    INSERT INTO ledger_progress (jurisdiction_id, read_until)
    VALUES (%(jurisdiction)s, clock_timestamp() - %(late)s::interval)
    ON CONFLICT (jurisdiction_id) DO NOTHING
)
SELECT 1;

-- name: ledger_progress_for_update
SELECT read_until, rewind_to FROM ledger_progress WHERE jurisdiction_id = %(jurisdiction)s FOR UPDATE;

-- name: ledger_set_progress
UPDATE ledger_progress SET read_until = greatest(read_until, %(read_until)s),
                           rewind_to = CASE WHEN %(clear_rewind)s THEN NULL ELSE rewind_to END
WHERE jurisdiction_id = %(jurisdiction)s;

-- name: ledger_rewind
-- Rows committed long after they were received: every live ledger reads again from the oldest of them.
UPDATE ledger_progress SET rewind_to = least(coalesce(rewind_to, %(oldest)s), %(oldest)s)
WHERE read_until - interval '5 minutes' > %(oldest)s;

-- name: overflow_hours
-- Per container, the hours its "container full" incidents were open within [start, end).
SELECT device_id, sum(extract(epoch FROM least(coalesce(resolved_at, closed_at, %(end)s), %(end)s)
                                          - greatest(first_seen_at, %(start)s))) / 3600.0 AS hours
FROM incidents
WHERE source = 'device_rule' AND service_code = 'container_full' AND device_id IS NOT NULL
  AND jurisdiction_id = %(jurisdiction)s AND first_seen_at < %(end)s
  AND coalesce(resolved_at, closed_at, %(end)s) > %(start)s
GROUP BY device_id
ORDER BY hours DESC, device_id;

-- name: ledger_add_days
INSERT INTO ledger_days (jurisdiction_id, day) SELECT %(jurisdiction)s, unnest(%(days)s::date[])
ON CONFLICT DO NOTHING;

-- name: ledger_delete_worked_days
DELETE FROM ledger_days WHERE jurisdiction_id = %(jurisdiction)s AND day >= %(first)s AND day <= %(last)s;

-- name: ledger_worked_days
SELECT day FROM ledger_days WHERE jurisdiction_id = %(jurisdiction)s AND day >= %(first)s AND day <= %(last)s;

-- name: ledger_any_truck_reading
SELECT EXISTS (
    SELECT 1 FROM devices d JOIN LATERAL (
        SELECT 1 FROM telemetry t WHERE t.device_id = d.device_id AND t.time >= %(start)s AND t.time < %(end)s LIMIT 1
    ) x ON true
    WHERE d.kind = 'truck' AND d.jurisdiction_id = %(jurisdiction)s
);
