"""Traffic generators, deterministic by seed: trucks and container sensors publishing over MQTT."""
