"""Counters per stage, exported on /metrics. Incremented once per batch, not per message."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter("wastegate_messages_received_total", "MQTT messages handed to the pipeline")
READINGS_STORED = Counter("wastegate_readings_stored_total", "Telemetry rows inserted")
READINGS_DUPLICATE = Counter(
    "wastegate_readings_duplicate_total", "Readings already stored (redelivered messages), not inserted again"
)
NOT_READINGS = Counter(
    "wastegate_messages_without_reading_total",
    "Recognised messages that carry no reading (LoRaWAN joins and acks, OwnTracks waypoints…)", ["kind"],
)
REJECTED = Counter("wastegate_rejected_total", "Messages sent to the dead letter", ["reason"])
BATCHES = Counter("wastegate_batches_committed_total", "Batches committed")
COMMIT_FAILURES = Counter("wastegate_commit_failures_total", "Batch commits that failed and were retried")
COMMITS_FENCED = Counter(
    "wastegate_commits_fenced_total", "Commits refused because a lease they were made under changed hands"
)
LEASES_HELD = Gauge("wastegate_leases_held", "1 while this replica holds the lease", ["lease"])
COMMIT_SECONDS = Histogram(
    "wastegate_commit_seconds", "Time to commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram("wastegate_batch_size", "Messages per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000))
MQTT_CONNECTED = Gauge("wastegate_mqtt_connected", "1 while connected to the broker")
MQTT_PENDING = Gauge("wastegate_mqtt_pending_messages", "Received, not yet committed and acknowledged")
BROKER_DROPPED = Gauge(
    "wastegate_broker_dropped_messages",
    "The broker's own count of messages it dropped ($SYS/broker/publish/messages/dropped)",
)
DEVICES_KNOWN = Gauge("wastegate_devices_known", "Devices in the gateway's registry")
RULE_EVALUATION_ERRORS = Counter("wastegate_rule_evaluation_errors_total", "Conditions that failed at run time")
INCIDENTS_OPENED = Counter("wastegate_incidents_opened_total", "Incidents opened by rules", ["rule"])
INCIDENTS_RESOLVED = Counter("wastegate_incidents_resolved_total", "Incidents resolved by rules", ["rule"])
RULE_RELOADS = Counter("wastegate_rule_reloads_total", "Rule file reloads", ["outcome"])
LATE_READINGS = Counter(
    "wastegate_late_readings_total",
    "Readings older than the last one evaluated for their device: stored, not evaluated",
)
WEBHOOKS_DELIVERED = Counter("wastegate_webhooks_delivered_total", "Incident events delivered to webhook subscribers")
WEBHOOK_FAILURES = Counter("wastegate_webhook_failures_total", "Webhook deliveries that failed and will be retried")
READINGS_DECODED = Counter("wastegate_readings_decoded_total", "Readings decoded from messages (before storing)")
MAIL = Counter("wastegate_mail_total", "E-mail messages by outcome: sent, retried (server unavailable), failed",
               ["outcome"])
