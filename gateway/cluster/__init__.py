"""Several replicas: leases in PostgreSQL (the sweeps, an MQTT session), and what a replica does when it
gains or loses one. The brokers and the database do the distributed work; nothing here is a protocol of
its own."""
