"""The decode stage: routing a topic to its device and profile, decoding, normalizing into canonical
Readings, the per-device rate limit (on the device's clock), LoRaWAN frame counters, and the runner of
the profiles' golden test cases. It imports the profiles and the device registry, nothing above."""

from gateway.ingest.stage import IngestLimits, Ingestor, IngestResult, devices_seen

__all__ = ["IngestLimits", "IngestResult", "Ingestor", "devices_seen"]
