"""Faults on real services: a broker killed mid-stream, a database outage, a flooding device, poison."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from gateway.embedded.mosquitto import Mosquitto
from gateway.embedded.ports import free_port
from gateway.embedded.postgres import Postgres
from gateway.settings import Settings
from tests.support import publish, running_gateway, scalar, sql, wait_until

BASE = datetime.now(UTC) - timedelta(minutes=20)


def truck(index: int, device: str | None = None) -> tuple[str, str]:
    return (f"trucks/{device or f'T{index % 9}'}/telemetry",
            json.dumps({"ts": (BASE + timedelta(milliseconds=index)).isoformat(), "lat": 41.39, "lon": 2.16}))


def count(url: str) -> int:
    return int(scalar(url, "SELECT count(*) FROM telemetry"))


def count_without_waiting(url: str) -> int:
    """Rows committed so far, read without waiting for a lock on the table (an estimate from stats)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables "
                           "WHERE relname LIKE 'telemetry%%' AND relname <> 'telemetry_staging'").fetchone()
    return int(row[0]) if row else 0


def test_broker_killed_mid_stream_and_restarted_loses_nothing(settings: Settings, tmp_path: object) -> None:
    url = settings.database_url
    # A broker that writes every change to disk at once: what it acknowledged survives a SIGKILL.
    directory = tmp_path / "durable-broker"  # type: ignore[operator]
    broker = Mosquitto(directory, extra_conf="autosave_on_changes true\n").start()
    settings = settings.model_copy(update={"mqtt_url": broker.url, "batch_max_size": 50, "mqtt_receive_maximum": 100})
    try:
        with running_gateway(settings) as gateway:
            publish(settings.mqtt_url, [truck(i) for i in range(300)])
            wait_until(lambda: count(url) == 300)
            # Commits stall, so the broker holds the rest of the stream (on disk) when it is killed, and the
            # gateway holds a batch it will commit but can no longer acknowledge.
            with psycopg.connect(url) as blocker:
                blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
                publish(settings.mqtt_url, [truck(i) for i in range(300, 3000)])  # every one acknowledged
                # Mosquitto writes its state after acknowledging, not before: a kill in the same instant can
                # lose the last message it acknowledged (see SECURITY.md). Give it that instant.
                time.sleep(1.0)
                broker.stop(kill=True)
                stored_at_kill = count_without_waiting(url)
            wait_until(lambda: not gateway.source.connected.is_set())
            broker.start()  # same port, same persistence directory
            wait_until(lambda: gateway.source.connected.is_set(), timeout_s=40)
            publish(settings.mqtt_url, [truck(i) for i in range(3000, 4000)])
            wait_until(lambda: count(url) == 4000, timeout_s=60)
    finally:
        broker.stop()
    assert stored_at_kill < 3000, "the kill came too late to test anything"
    assert scalar(url, "SELECT count(DISTINCT time) FROM telemetry") == 4000


def test_database_outage_holds_a_bounded_backlog_then_commits_it(
        settings: Settings, postgres: Postgres) -> None:
    url = settings.database_url
    api_port = free_port()
    settings = settings.model_copy(update={"mqtt_receive_maximum": 100, "batch_max_size": 50,
                                           "api_enabled": True, "api_port": api_port})
    readyz = f"http://127.0.0.1:{api_port}/readyz"
    with running_gateway(settings) as gateway:
        publish(settings.mqtt_url, [truck(i) for i in range(500)])
        wait_until(lambda: count(url) == 500)
        sender = threading.Thread(target=publish, args=(settings.mqtt_url, [truck(i) for i in range(500, 5500)]))
        postgres.stop("fast")
        try:
            sender.start()
            outage_started = time.monotonic()
            received_before = gateway.source.received
            wait_until(lambda: httpx.get(readyz, timeout=2).status_code == 503, timeout_s=20)
            held = []
            while time.monotonic() - outage_started < 30:  # thirty seconds without a database
                held.append(gateway.source.received - received_before)
                time.sleep(1)
            assert max(held) <= 100 + 50  # the receive maximum, plus the batch in hand
            assert httpx.get(readyz, timeout=2).json()["checks"]["database"] is False
        finally:
            postgres.start()
        sender.join(timeout=60)
        wait_until(lambda: count(url) == 5500, timeout_s=90)
        wait_until(lambda: httpx.get(readyz, timeout=2).status_code == 200, timeout_s=20)
    assert scalar(url, "SELECT count(DISTINCT time) FROM telemetry") == 5500


def test_a_flooding_device_is_limited_without_slowing_the_others(settings: Settings) -> None:
    url = settings.database_url
    settings = settings.model_copy(update={"device_rate_limit_per_s": 5.0, "device_rate_window_s": 4.0})
    flood = [truck(i, "T-FLOOD") for i in range(2000)]  # a hundred times its normal rate, and more
    normal = [truck(i, f"T{i % 10}") for i in range(10_000, 10_100)]  # ten messages each, within their burst
    with running_gateway(settings):
        publish(settings.mqtt_url, flood + normal)
        wait_until(lambda: count(url) + scalar(url, "SELECT count(*) FROM rejected_messages") == 2100)
    stored = dict(sql(url, "SELECT device_id, count(*) FROM telemetry GROUP BY 1"))
    assert sum(n for d, n in stored.items() if d != "T-FLOOD") == 100  # every normal message
    assert 20 <= stored["T-FLOOD"] < 200  # its burst and its rate, not the flood
    limited = sql(url, "SELECT reason, device_id, count(*) FROM rejected_messages GROUP BY 1, 2")
    assert limited == [("rate_limited", "T-FLOOD", 2000 - stored["T-FLOOD"])]
