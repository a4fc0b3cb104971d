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
