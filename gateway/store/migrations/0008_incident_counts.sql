-- 0008: what the console's queue shows on every page, kept cheap with a million incidents in the store:
-- the count of incidents per status, maintained by a trigger (exact, instead of counting them all on
-- each request), and the open incidents newest first by an index of their own.
CREATE TABLE incident_status_counts (
    status  text PRIMARY KEY,
    n       bigint NOT NULL
);
INSERT INTO incident_status_counts (status, n) SELECT status, count(*) FROM incidents GROUP BY status;

CREATE FUNCTION wastegate_count_incident_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE incident_status_counts SET n = n - 1 WHERE status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO incident_status_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = incident_status_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER incidents_count_insert_delete AFTER INSERT OR DELETE ON incidents
    FOR EACH ROW EXECUTE FUNCTION wastegate_count_incident_status();
CREATE TRIGGER incidents_count_status_change AFTER UPDATE OF status ON incidents
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION wastegate_count_incident_status();

CREATE INDEX incidents_open_id_idx ON incidents (id) WHERE status NOT IN ('resolved', 'closed');
