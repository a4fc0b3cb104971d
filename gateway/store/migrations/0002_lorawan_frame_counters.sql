-- 0002: LoRaWAN frame counters per device, so lost uplinks can be seen per device.
ALTER TABLE devices
    ADD COLUMN uplink_frames_lost bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_f_cnt bigint;
