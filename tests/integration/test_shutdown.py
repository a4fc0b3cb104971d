"""`wastegate serve` as a real process: SIGTERM mid-stream flushes and exits 0, SIGKILL loses nothing
either, and after a restart every message is in `telemetry` exactly once."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gateway.embedded.ports import free_port
from gateway.embedded.postgres import Postgres
from gateway.settings import Settings
from tests.support import publish, publish_until, scalar, serve, sql, wait_until

MESSAGES = 20000  # several times the receive maximum, so the stop always lands mid-stream


BASE = datetime.now(UTC) - timedelta(hours=1)


def truck_message(index: int) -> tuple[str, str]:
    base = BASE
    return (f"trucks/T{index % 25}/telemetry",
            json.dumps({"ts": (base + timedelta(milliseconds=index)).isoformat(), "lat": 41.38, "lon": 2.17,
                        "seq": index}))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stop_mid_stream_then_restart_loses_and_duplicates_nothing(settings: Settings, signum: int) -> None:
    url = settings.database_url

    def count() -> int:
        return int(scalar(url, "SELECT count(*) FROM telemetry"))

    api_port = free_port()
    process = serve(settings, api_port)
    try:
        # Until the gateway has subscribed, messages go nowhere: repeat one (idempotent) until it is stored.
        publish_until(settings.mqtt_url, [truck_message(-1)], lambda: count() == 1)
        stream = [truck_message(i) for i in range(MESSAGES)]
        publisher = threading.Thread(target=publish, args=(settings.mqtt_url, stream))
        publisher.start()
        wait_until(lambda: count() > MESSAGES // 4, timeout_s=60, interval_s=0.02)
        ready = httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"] == {"mqtt": True, "database": True}
        assert "wastegate_readings_stored_total" in httpx.get(f"http://127.0.0.1:{api_port}/metrics").text
        process.send_signal(signum)
        returncode = process.wait(timeout=60)
        stored_at_stop = count()
        publisher.join(timeout=120)
        if signum == signal.SIGTERM:
            assert returncode == 0, process.stderr.read().decode() if process.stderr else ""
        assert stored_at_stop < MESSAGES + 1, "the stop came too late to test anything"
        process = serve(settings, api_port)
        wait_until(lambda: count() == MESSAGES + 1, timeout_s=90)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert count() == MESSAGES + 1
    distinct = scalar(url, "SELECT count(DISTINCT (device_id, time)) FROM telemetry")
    assert distinct == MESSAGES + 1


def test_sigkill_keeps_rule_state_and_makes_no_duplicate_incident(settings: Settings) -> None:
    """A container tilted for 4 of the 5 minutes its rule asks, the gateway killed, then restarted: the
    fifth minute opens the incident, and the messages the broker redelivers do not open a second one."""
    from types import MappingProxyType

    from gateway.devices import Device
    from gateway.store.devices import upsert_devices

    url = settings.database_url
    upsert_devices(url, [Device("C-0001", "container", "container", "Mallorca 401",
                                attributes=MappingProxyType({"bin_depth_mm": 1200}))])

    def tilted(minute: int) -> tuple[str, str]:
        return "containers/C-0001/telemetry", json.dumps(
            {"ts": (BASE + timedelta(minutes=minute)).isoformat(), "tilted": True})

    api_port = free_port()
    process = serve(settings, api_port)
    try:
        publish_until(settings.mqtt_url, [tilted(0)], lambda: scalar(url, "SELECT count(*) FROM telemetry") == 1)
        publish(settings.mqtt_url, [tilted(4)])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 2)
        assert scalar(url, "SELECT count(*) FROM rule_state WHERE rule_id = 'container-tilted'") == 1
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        publish(settings.mqtt_url, [tilted(5), tilted(4), tilted(6)])  # the 4th again, as a redelivery would
        process = serve(settings, api_port)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 4, timeout_s=60)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents") == 1)
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    rows = sql(url, "SELECT rule_id, status, occurrences, first_seen_at FROM incidents")
    assert rows == [("container-tilted", "open", 1, BASE + timedelta(minutes=5))]


def test_sigterm_with_the_database_gone_exits_within_the_grace_non_zero_and_loses_nothing(
        settings: Settings, postgres: Postgres) -> None:
    """The database stops mid-stream; SIGTERM then ends `serve` within its grace, with exit status 1 and
    what it held unacknowledged; once the database is back, a new `serve` stores every message."""
    url = settings.database_url

    def count() -> int:
        return int(scalar(url, "SELECT count(*) FROM telemetry"))

    api_port = free_port()
    grace_s = 3.0
    process = serve(settings, api_port, WASTEGATE_SHUTDOWN_GRACE_S=str(grace_s))
    try:
        publish_until(settings.mqtt_url, [truck_message(-1)], lambda: count() == 1)
        postgres.stop("fast")
        try:
            publish(settings.mqtt_url, [truck_message(i) for i in range(500)])
            time.sleep(1.0)  # received, and failing to commit
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=60)
            took = time.monotonic() - signalled
        finally:
            postgres.start()
        stderr = process.stderr.read().decode() if process.stderr else ""
        assert returncode == 1, stderr
        assert took < grace_s + 5, f"took {took:.1f} s"
        assert "not committed" in stderr
        process = serve(settings, api_port)
        wait_until(lambda: count() == 501, timeout_s=60)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert scalar(url, "SELECT count(DISTINCT (device_id, time)) FROM telemetry") == 501
