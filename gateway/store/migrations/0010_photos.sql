-- 0010: photos of reports, stored here (no other service needed): the cleaned JPEG and its thumbnail,
-- served by an unguessable token; staff may hide one, with the reason in the incident's history.
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
