"""Delivery guarantees on real services: bounded in-flight work while the database stalls, and a broker
restart that loses nothing."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from gateway.embedded.mosquitto import Mosquitto
from gateway.settings import Settings
from tests.support import publish, running_gateway, scalar, wait_until

BASE = datetime.now(UTC) - timedelta(minutes=30)


def truck(index: int) -> tuple[str, str]:
    return (f"trucks/T{index % 7}/telemetry",
            json.dumps({"ts": (BASE + timedelta(milliseconds=index)).isoformat(), "lat": 41.39, "lon": 2.16}))


def test_a_stalled_database_stops_intake_at_the_receive_maximum(settings: Settings) -> None:
    settings = settings.model_copy(update={"mqtt_receive_maximum": 20, "batch_max_size": 5})
    url = settings.database_url
    with running_gateway(settings) as gateway:
        with psycopg.connect(url) as blocker:
            blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")  # commits now wait
            sender = threading.Thread(target=publish, args=(settings.mqtt_url, [truck(i) for i in range(300)]))
            sender.start()
            wait_until(lambda: gateway.source.received >= 20)
            time.sleep(1.0)  # time for the broker to overrun the bound, if it were going to
            assert gateway.source.received == 20  # unacknowledged QoS 1 messages never exceed the bound
            assert scalar(url, "SELECT count(*) FROM rejected_messages") == 0
            blocker.rollback()  # release the lock: everything flows again
        sender.join(timeout=60)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 300, timeout_s=60)
    assert gateway.source.received >= 300


def test_broker_restart_loses_nothing(settings: Settings, broker: Mosquitto) -> None:
    url = settings.database_url
    with running_gateway(settings) as gateway:
        publish(settings.mqtt_url, [truck(i) for i in range(500)])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 500)
        broker.stop()
        wait_until(lambda: not gateway.source.connected.is_set())
        broker.start()  # same port, same persistence directory
        wait_until(lambda: gateway.source.connected.is_set(), timeout_s=40)
        publish(settings.mqtt_url, [truck(i) for i in range(500, 1000)])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 1000, timeout_s=30)
    assert scalar(url, "SELECT count(DISTINCT time) FROM telemetry") == 1000
