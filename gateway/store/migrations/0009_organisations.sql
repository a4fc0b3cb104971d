-- 0009: the city's organisation. Departments and partner entities, their members (console users, a role
-- in each), the organisation each incident is routed to with its priority and deadlines, the e-mail
-- outbox (mail is composed from incident_events past a cursor, as webhooks are, then sent from here), and
-- the municipality (jurisdiction) devices, incidents, organisations and users belong to: '' on a
-- single-city install.
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

CREATE TABLE organisation_members (
    organisation_id  bigint NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role             text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    PRIMARY KEY (organisation_id, user_id)
);
CREATE INDEX organisation_members_user_idx ON organisation_members (user_id);

ALTER TABLE devices ADD COLUMN jurisdiction_id text NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN jurisdiction_id text NOT NULL DEFAULT '';

ALTER TABLE incidents
    ADD COLUMN jurisdiction_id  text NOT NULL DEFAULT '',
    ADD COLUMN organisation_id  bigint REFERENCES organisations (id),
    ADD COLUMN priority         text CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    -- deadlines on the working-hours calendar, from when the incident was registered
    ADD COLUMN respond_by       timestamptz,
    ADD COLUMN resolve_by       timestamptz;
CREATE INDEX incidents_organisation_idx ON incidents (organisation_id, id);
CREATE INDEX incidents_jurisdiction_idx ON incidents (jurisdiction_id, id);
CREATE INDEX incidents_open_resolve_by_idx ON incidents (resolve_by)
    WHERE resolve_by IS NOT NULL AND status NOT IN ('resolved', 'closed');

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
    -- recipients the server refused (bounced at SMTP time), with its answer
    refused          jsonb NOT NULL DEFAULT '{}'::jsonb,
    sent_at          timestamptz
);
CREATE INDEX mail_outbox_pending_idx ON mail_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX mail_outbox_incident_idx ON mail_outbox (incident_id);

-- How far the mail composer has read incident_events, and the day each organisation's digest went out.
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

-- The key the reporters' private follow links are signed with (HMAC of the incident's id), made here once
-- per database so that every replica signs alike.
CREATE TABLE instance_secrets (
    name   text PRIMARY KEY,
    value  text NOT NULL
);
INSERT INTO instance_secrets (name, value) VALUES ('follow_link', gen_random_uuid()::text || gen_random_uuid()::text);
