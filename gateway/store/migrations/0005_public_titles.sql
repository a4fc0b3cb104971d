-- 0005: what Open311 shows of an incident is kept apart from what staff see. A device incident's title and
-- description are rendered from device and household attributes (addresses, RFID tags, plates); publicly
-- it goes by its public title, which staff may set, and by its service's name while that is NULL.
ALTER TABLE incidents ADD COLUMN public_title text;

-- 'edit': a change to what is shown of an incident (its public title), with who made it.
ALTER TABLE incident_events DROP CONSTRAINT incident_events_kind_check;
ALTER TABLE incident_events ADD CONSTRAINT incident_events_kind_check
    CHECK (kind IN ('created', 'occurrence', 'status', 'severity', 'comment', 'assignment', 'merge', 'link', 'edit'));
