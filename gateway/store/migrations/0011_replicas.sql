-- 0011: several replicas. A lease is held by one replica at a time until it expires (the sweeps; the
-- MQTT session of an active–standby pair; a RabbitMQ partition). Its epoch grows each time it changes
-- hands, and a commit made under a lease checks it in the same transaction: a replica that lost the lease
-- can no longer commit for it, however late its commit comes (fencing, not timing).
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

-- Silence is judged on the device time of a device's latest reading, from what is committed.
ALTER TABLE devices ADD COLUMN last_reading_at timestamptz;
UPDATE devices d SET last_reading_at = (SELECT max(t.time) FROM telemetry t WHERE t.device_id = d.device_id)
WHERE d.last_seen IS NOT NULL;

-- Sweeps decide collections from the lifts committed, by tag and time, whichever replica stored them.
CREATE INDEX telemetry_lifts_idx ON telemetry (rfid, time) WHERE event = 'bin_lift';

-- A rule state written under a RabbitMQ partition says which: the replica that gains the partition loads
-- those states before its first reading.
ALTER TABLE rule_state ADD COLUMN partition integer;
CREATE INDEX rule_state_partition_idx ON rule_state (partition) WHERE partition IS NOT NULL;
