-- 0003: the case store shared by citizens' reports, staff, partners and device rules, its audit trail, and
-- the persisted state of the rules.

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
    closed_at       timestamptz
);
CREATE UNIQUE INDEX incidents_one_open_per_cause ON incidents (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status NOT IN ('resolved', 'closed');
CREATE INDEX incidents_status_idx ON incidents (status, created_at);
CREATE INDEX incidents_service_code_idx ON incidents (service_code, created_at);
CREATE INDEX incidents_device_idx ON incidents (device_id, created_at);

CREATE TABLE incident_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL
                 CHECK (kind IN ('created', 'occurrence', 'status', 'severity', 'comment', 'assignment', 'merge')),
    actor        text NOT NULL,
    from_status  text,
    to_status    text,
    note         text NOT NULL DEFAULT '',
    data         jsonb NOT NULL DEFAULT '{}'::jsonb
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
    PRIMARY KEY (rule_id, subject)
);
