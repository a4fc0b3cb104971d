-- 0012: the collection ledger. Per stop on a collection schedule (a household, a container) and local day,
-- the facts the trucks gave: the first lift of its tag, the first pass within reach during its window, the
-- first driver's "bin not out". Facts, not verdicts: the status is read off them at a given time.
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
