-- The whole schema as the numbered migrations leave it, for reading and for new deployments to compare
-- against. tests/integration/test_migrations.py checks that both produce the same database.
-- schema_migrations (the migration ledger) is created by gateway/store/migrate.py, not here.


CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    profile     text NOT NULL,
    kind        text NOT NULL,
    name        text,
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lon         double precision CHECK (lon BETWEEN -180 AND 180),
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen  timestamptz,
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- LoRaWAN: uplinks lost (jumps in the frame counter) and the last counter seen
    uplink_frames_lost bigint NOT NULL DEFAULT 0,
    last_f_cnt  bigint,
    -- the municipality it serves ('' on a single-city install): only that city's rules apply to it
    jurisdiction_id text NOT NULL DEFAULT '',
    -- the device time of its latest reading (last_seen is when it was received): silence is judged on it
    last_reading_at timestamptz
);
CREATE INDEX devices_kind_idx ON devices (kind);

DO $migration$
DECLARE
    telemetry_columns constant text := $columns$
        time          timestamptz NOT NULL,
        device_id     text NOT NULL,
        message_key   bytea NOT NULL,
        received_at   timestamptz NOT NULL,
        profile       text NOT NULL,
        lat           double precision,
        lon           double precision,
        speed_kmh     double precision,
        heading_deg   double precision,
        fill_pct      double precision,
        distance_mm   double precision,
        temperature_c double precision,
        battery_pct   double precision,
        battery_v     double precision,
        tilted        boolean,
        weight_kg     double precision,
        rfid          text,
        event         text,
        extra         jsonb,
        -- The key makes a redelivered message a no-op and serves "latest readings of one device".
        PRIMARY KEY (device_id, time, message_key)
    $columns$;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE format('CREATE TABLE telemetry (%s)', telemetry_columns);
        PERFORM create_hypertable('telemetry', 'time', chunk_time_interval => INTERVAL '1 day');
    ELSE
        EXECUTE format('CREATE TABLE telemetry (%s) PARTITION BY RANGE (time)', telemetry_columns);
        CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;
    END IF;
END
$migration$;

-- Sweeps decide collections from the lifts committed, by tag and time, whichever replica stored them.
CREATE INDEX telemetry_lifts_idx ON telemetry (rfid, time) WHERE event = 'bin_lift';

-- Plain-PostgreSQL partition upkeep: one partition per UTC day. Rows that fell into the default partition
-- for a day are moved into the new partition, so creating it never fails. Serialized across replicas.
CREATE FUNCTION wastegate_ensure_telemetry_partitions(first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    partition_name text;
    lower_bound timestamptz;
    upper_bound timestamptz;
    created integer := 0;
BEGIN
    IF to_regclass('telemetry_default') IS NULL THEN
        RETURN 0;  -- a TimescaleDB hypertable manages its own chunks
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('wastegate_telemetry_partitions'));
    FOR day IN SELECT generate_series(first_day, last_day, INTERVAL '1 day')::date LOOP
        partition_name := format('telemetry_p%s', to_char(day, 'YYYYMMDD'));
        CONTINUE WHEN to_regclass(partition_name) IS NOT NULL;
        lower_bound := day::timestamp AT TIME ZONE 'UTC';
        upper_bound := (day + 1)::timestamp AT TIME ZONE 'UTC';
        IF EXISTS (SELECT 1 FROM telemetry_default WHERE time >= lower_bound AND time < upper_bound) THEN
            EXECUTE format('CREATE TABLE %I (LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           partition_name);
            EXECUTE format('WITH moved AS (DELETE FROM telemetry_default WHERE time >= %L AND time < %L '
                           'RETURNING *) INSERT INTO %I SELECT * FROM moved',
                           lower_bound, upper_bound, partition_name);
            EXECUTE format('ALTER TABLE telemetry ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           partition_name, lower_bound, upper_bound);
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                           partition_name, lower_bound, upper_bound);
        END IF;
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Plain-PostgreSQL retention: drops whole day partitions that end on or before `before_day`.
CREATE FUNCTION wastegate_drop_telemetry_partitions(before_day date)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    partition regclass;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('wastegate_telemetry_partitions'));
    FOR partition IN
        SELECT inhrelid::regclass FROM pg_inherits
        WHERE inhparent = 'telemetry'::regclass
          AND inhrelid::regclass::text ~ '^telemetry_p[0-9]{8}$'
          AND to_date(substring(inhrelid::regclass::text FROM 12), 'YYYYMMDD') < before_day
    LOOP
        EXECUTE format('DROP TABLE %s', partition);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

CREATE TABLE rejected_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    topic         text NOT NULL,
    payload       bytea NOT NULL,
    payload_size  integer NOT NULL,
    reason        text NOT NULL,
    detail        text NOT NULL DEFAULT '',
    profile       text,
    device_id     text,
    -- A redelivered bad message is recorded once.
    message_key   bytea NOT NULL UNIQUE,
    -- The last replay: 'stored' and 'not_reading' take the message out of the dead letter; 'rejected'
    -- leaves it in, with the reason it failed again.
    replayed_at   timestamptz,
    replay_outcome text CHECK (replay_outcome IN ('stored', 'not_reading', 'rejected'))
);
CREATE INDEX rejected_messages_received_at_idx ON rejected_messages (received_at);
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason, received_at);


-- Departments and partner entities; incidents are routed to one of them.
CREATE TABLE organisations (
    id          bigserial PRIMARY KEY,
    -- the municipality it serves ('' on a single-city install)
    jurisdiction_id text NOT NULL DEFAULT '',
    slug        text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        text NOT NULL CHECK (kind IN ('department', 'partner')),
    emails      text[] NOT NULL DEFAULT '{}',
    -- a partner's own webhook: it receives the changes of the incidents routed to it, and nothing else
    webhook_url text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (jurisdiction_id, slug)
);

CREATE TABLE incidents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('citizen', 'staff', 'partner', 'device_rule')),
    service_code    text NOT NULL,
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'assigned', 'in_progress', 'resolved', 'closed')),
    severity        text NOT NULL DEFAULT 'minor' CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    title           text NOT NULL,
    description     text NOT NULL DEFAULT '',
    rule_id         text,
    device_id       text,
    subject         text,
    -- "one open incident per cause": the rule and its subject for device incidents
    dedupe_key      text,
    lat             double precision CHECK (lat BETWEEN -90 AND 90),
    lon             double precision CHECK (lon BETWEEN -180 AND 180),
    address         text,
    first_seen_at   timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    occurrences     integer NOT NULL DEFAULT 1,
    assigned_to     text,
    duplicate_of    bigint REFERENCES incidents (id),
    -- reporters' personal data: never in a public response
    reporter        jsonb,
    media_url       text,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    closed_at       timestamptz,
    -- a citizen report linked to the device incident it matches (same service, near, recent)
    linked_to       bigint REFERENCES incidents (id),
    -- what Open311 calls it (NULL: its service's name); title and description are internal for device
    -- incidents, rendered from device and household attributes
    public_title    text,
    -- the municipality ('' on a single-city install); where it is routed, how urgent, and its deadlines on
    -- the working-hours calendar
    jurisdiction_id  text NOT NULL DEFAULT '',
    organisation_id  bigint REFERENCES organisations (id),
    priority         text CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    respond_by       timestamptz,
    resolve_by       timestamptz,
    -- the reporter's rating of the outcome: once, after it is resolved
    rating           smallint CHECK (rating BETWEEN 1 AND 5),
    rating_comment   text,
    rated_at         timestamptz,
    -- how it reached the city
    channel          text CHECK (channel IN ('web', 'app', 'phone', 'counter', 'letter', 'email', 'partner', 'device'))
);
CREATE UNIQUE INDEX incidents_one_open_per_cause ON incidents (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status NOT IN ('resolved', 'closed');
CREATE INDEX incidents_status_idx ON incidents (status, created_at);
CREATE INDEX incidents_service_code_idx ON incidents (service_code, created_at);
CREATE INDEX incidents_device_idx ON incidents (device_id, created_at);
CREATE INDEX incidents_linked_to_idx ON incidents (linked_to) WHERE linked_to IS NOT NULL;
CREATE INDEX incidents_organisation_idx ON incidents (organisation_id, id);
CREATE INDEX incidents_jurisdiction_idx ON incidents (jurisdiction_id, id);
CREATE INDEX incidents_rated_at_idx ON incidents (rated_at) WHERE rated_at IS NOT NULL;
CREATE INDEX incidents_open_resolve_by_idx ON incidents (resolve_by)
    WHERE resolve_by IS NOT NULL AND status NOT IN ('resolved', 'closed');
CREATE INDEX incidents_open_place_idx ON incidents (service_code, lat, lon) WHERE status NOT IN ('resolved', 'closed');

CREATE TABLE incident_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL,
    actor        text NOT NULL,
    from_status  text,
    to_status    text,
    note         text NOT NULL DEFAULT '',
    data         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- internal notes stay out of Open311's status_notes and the public updates feed
    public       boolean NOT NULL DEFAULT true,
    CONSTRAINT incident_events_kind_check
        CHECK (kind IN ('created', 'occurrence', 'status', 'severity', 'comment', 'assignment', 'merge', 'link',
                        'edit', 'rating'))
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, id);
CREATE INDEX incident_events_at_idx ON incident_events (at);

-- What each rule remembers per subject (pending durations, inside/outside, last values), written in the
-- same transaction as the batch that changed it, so a restart resumes where it stopped.
CREATE TABLE rule_state (
    rule_id     text NOT NULL,
    subject     text NOT NULL,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- the RabbitMQ partition it was written under: the replica that gains the partition loads these
    partition   integer,
    PRIMARY KEY (rule_id, subject)
);
CREATE INDEX rule_state_partition_idx ON rule_state (partition) WHERE partition IS NOT NULL;

-- Webhooks deliver incident_events in order from here; the cursor survives restarts.
CREATE TABLE webhook_cursor (
    url            text PRIMARY KEY,
    last_event_id  bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Staff accounts of the web console (the API keeps its bearer tokens), and their sign-in sessions: a
-- random token in an HttpOnly cookie, of which only the SHA-256 is stored, with its forms' CSRF token.
CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    language       text CHECK (language IN ('en', 'ca', 'es')),
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- the municipality whose staff they are ('' on a single-city install)
    jurisdiction_id text NOT NULL DEFAULT ''
);

CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_user_idx ON console_sessions (user_id);

-- The count of incidents per status, kept by a trigger: the console's queue shows it on every page.
CREATE TABLE incident_status_counts (
    status  text PRIMARY KEY,
    n       bigint NOT NULL
);

CREATE FUNCTION wastegate_count_incident_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per statement, from its transition tables: a bulk insert of a million incidents is one write
    -- per status, and an update that changes no status (an occurrence counted) writes nothing. (Each
    -- branch reads only the transition tables its operation has.)
    IF TG_OP = 'INSERT' THEN
        INSERT INTO incident_status_counts (status, n) SELECT status, count(*) FROM new_rows GROUP BY status
        ON CONFLICT (status) DO UPDATE SET n = incident_status_counts.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE incident_status_counts c SET n = c.n - o.n
        FROM (SELECT status, count(*) AS n FROM old_rows GROUP BY status) o WHERE c.status = o.status;
    ELSE
        WITH changes AS (
            SELECT status, count(*) AS d FROM new_rows GROUP BY status
            UNION ALL
            SELECT status, -count(*) FROM old_rows GROUP BY status
        ), net AS (
            SELECT status, sum(d) AS d FROM changes GROUP BY status HAVING sum(d) <> 0
        )
        INSERT INTO incident_status_counts (status, n) SELECT status, d FROM net
        ON CONFLICT (status) DO UPDATE SET n = incident_status_counts.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER incidents_count_insert AFTER INSERT ON incidents REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wastegate_count_incident_status();
CREATE TRIGGER incidents_count_update AFTER UPDATE ON incidents
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wastegate_count_incident_status();
CREATE TRIGGER incidents_count_delete AFTER DELETE ON incidents REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wastegate_count_incident_status();

CREATE INDEX incidents_open_id_idx ON incidents (id) WHERE status NOT IN ('resolved', 'closed');

-- Members of organisations (console users), with their role in each.
CREATE TABLE organisation_members (
    organisation_id  bigint NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role             text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    PRIMARY KEY (organisation_id, user_id)
);
CREATE INDEX organisation_members_user_idx ON organisation_members (user_id);

-- E-mail waiting to go, sent, or refused: composed from incident_events past `mail_cursor` (as webhooks
-- read them), so a mail server that is down holds mail here and never slows ingestion.
CREATE TABLE mail_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    kind             text NOT NULL CHECK (kind IN ('assigned', 'receipt', 'status', 'closed', 'digest', 'reply',
                                                   'message')),
    incident_id      bigint REFERENCES incidents (id) ON DELETE SET NULL,
    organisation_id  bigint REFERENCES organisations (id) ON DELETE SET NULL,
    recipients       text[] NOT NULL,
    subject          text NOT NULL,
    body_text        text NOT NULL,
    body_html        text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    refused          jsonb NOT NULL DEFAULT '{}'::jsonb,
    sent_at          timestamptz
);
CREATE INDEX mail_outbox_pending_idx ON mail_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX mail_outbox_incident_idx ON mail_outbox (incident_id);

CREATE TABLE mail_cursor (
    name           text PRIMARY KEY,
    last_event_id  bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE mail_digests (
    organisation_id  bigint NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    day              date NOT NULL,
    PRIMARY KEY (organisation_id, day)
);

-- Keys made once per database (the follow links' signing key), the same for every replica.
CREATE TABLE instance_secrets (
    name   text PRIMARY KEY,
    value  text NOT NULL
);

-- Photos of reports: the cleaned JPEG and its thumbnail, served by an unguessable token; staff may hide one.
CREATE TABLE photos (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id    bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    token          text NOT NULL UNIQUE,
    content_type   text NOT NULL,
    width          integer NOT NULL,
    height         integer NOT NULL,
    image          bytea NOT NULL,
    thumbnail      bytea NOT NULL,
    hidden         boolean NOT NULL DEFAULT false,
    hidden_reason  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX photos_incident_idx ON photos (incident_id);

-- Several replicas. A lease is held by one replica at a time until it expires (the sweeps; the MQTT session
-- of an active–standby pair; a RabbitMQ partition); its epoch grows each time it changes hands, and a commit
-- made under a lease checks it in the same transaction (fencing).
CREATE TABLE leases (
    name         text PRIMARY KEY,
    holder       text,
    epoch        bigint NOT NULL,
    expires_at   timestamptz NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now()
);

-- The live replicas, each with its last heartbeat: partitions are spread over those whose heartbeat is fresh.
CREATE TABLE replicas (
    replica_id    text PRIMARY KEY,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL
);

-- The collection ledger. Per stop on a collection schedule (a household, a container) and local day, the
-- facts the trucks gave: the first lift of its tag, the first pass within reach during its window, the first
-- driver's "bin not out". Facts, not verdicts: the status is read off them at a given time.
CREATE TABLE collection_ledger (
    jurisdiction_id  text NOT NULL DEFAULT '',
    stop_id          text NOT NULL,
    day              date NOT NULL,
    scheduled        boolean NOT NULL,
    lift_at          timestamptz,
    lift_truck       text,
    lift_lat         double precision,
    lift_lon         double precision,
    lift_weight_kg   double precision,
    passed_at        timestamptz,
    passed_truck     text,
    not_out_at       timestamptz,
    not_out_truck    text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (jurisdiction_id, day, stop_id)
);

-- How far the live ledger has read the telemetry, by the time each row was received; and, when rows were
-- committed long after they were received (a replay from the dead letter, a batch retried while the
-- database was away), the oldest of those: the next round reads again from there.
CREATE TABLE ledger_progress (
    jurisdiction_id  text PRIMARY KEY,
    read_until       timestamptz NOT NULL,
    rewind_to        timestamptz
);

-- The days the ledger saw the trucks at work: only those are judged (a day before the ledger was kept, or
-- with no truck data at all, is "no data", not a day of misses).
CREATE TABLE ledger_days (
    jurisdiction_id  text NOT NULL DEFAULT '',
    day              date NOT NULL,
    PRIMARY KEY (jurisdiction_id, day)
);

-- The live ledger reads what was received since it last looked: a BRIN index costs the writer next to
-- nothing (rows arrive in receiving order).
CREATE INDEX telemetry_received_brin ON telemetry USING brin (received_at);
