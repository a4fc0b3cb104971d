-- 0004: the staff workflow and citizens' reports: links between a citizen report and the device incident
-- it matches, public or internal notes, and the webhook outbox cursor.
ALTER TABLE incidents ADD COLUMN linked_to bigint REFERENCES incidents (id);
CREATE INDEX incidents_linked_to_idx ON incidents (linked_to) WHERE linked_to IS NOT NULL;
CREATE INDEX incidents_open_place_idx ON incidents (service_code, lat, lon) WHERE status NOT IN ('resolved', 'closed');

ALTER TABLE incident_events ADD COLUMN public boolean NOT NULL DEFAULT true;
ALTER TABLE incident_events DROP CONSTRAINT incident_events_kind_check;
ALTER TABLE incident_events ADD CONSTRAINT incident_events_kind_check
    CHECK (kind IN ('created', 'occurrence', 'status', 'severity', 'comment', 'assignment', 'merge', 'link'));

-- Webhooks deliver incident_events in order from here; the cursor survives restarts.
CREATE TABLE webhook_cursor (
    url            text PRIMARY KEY,
    last_event_id  bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
