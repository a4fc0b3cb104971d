-- 0010: the citizen's side. Photos of reports, stored here (no other service needed): the cleaned JPEG
-- and its thumbnail, served by an unguessable token; staff may hide one, with the reason in the
-- incident's history. And the reporter's rating of the outcome.
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

-- The reporter's rating of the outcome (once, after it is resolved), and the event kind that records it.
ALTER TABLE incidents
    ADD COLUMN rating          smallint CHECK (rating BETWEEN 1 AND 5),
    ADD COLUMN rating_comment  text,
    ADD COLUMN rated_at        timestamptz;
CREATE INDEX incidents_rated_at_idx ON incidents (rated_at) WHERE rated_at IS NOT NULL;
ALTER TABLE incident_events DROP CONSTRAINT incident_events_kind_check;
ALTER TABLE incident_events ADD CONSTRAINT incident_events_kind_check
    CHECK (kind IN ('created', 'occurrence', 'status', 'severity', 'comment', 'assignment', 'merge', 'link',
                    'edit', 'rating'));

-- How each report reached the city (the channel), for the statistics and a call-back.
ALTER TABLE incidents ADD COLUMN channel text CHECK (channel IN ('web', 'app', 'phone', 'counter', 'letter', 'email', 'partner', 'device'));
UPDATE incidents SET channel = CASE source WHEN 'device_rule' THEN 'device' WHEN 'partner' THEN 'partner'
                                           WHEN 'citizen' THEN 'web' ELSE coalesce(reporter ->> 'channel', 'phone') END;
