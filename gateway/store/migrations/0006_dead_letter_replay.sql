-- 0006: a dead-letter row remembers its last replay (`wastegate deadletter replay`), so that a message
-- replayed into telemetry is not replayed again, and one that fails again keeps its one row with the
-- new reason.
ALTER TABLE rejected_messages
    ADD COLUMN replayed_at timestamptz,
    ADD COLUMN replay_outcome text CHECK (replay_outcome IN ('stored', 'not_reading', 'rejected'));
