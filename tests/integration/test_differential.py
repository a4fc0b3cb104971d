"""The proof of scale-out, by comparison: the same simulated city traffic (the city simulator: more than
20,000 messages from 52 devices, with the incidents its script stages, dropouts, malformed messages, and
late and duplicate messages added) through
  (a) one replica on Mosquitto,
  (b) two replicas active–standby on Mosquitto, the active one SIGKILLed mid-stream,
  (c) three replicas on RabbitMQ partitions, one SIGKILLed mid-stream and restarted, another stopped
      cleanly (its partitions move),
each on real brokers and a database of its own. (b) and (c) store the same telemetry rows as (a), none
lost and none twice, and open the same incidents: same dedupe keys, same opening and resolving device
times, same occurrences.

The per-reading rules are what several replicas can get wrong here (a device's readings split, a state not
handed over, a commit from a replica that lost its partition). The sweeps are decided from what is
committed, whoever received it (`test_replicas`'s split-stream test): here they run at fixed times, before
the traffic and after it (`wastegate sweep --at`), so that what they find is compared too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.embedded.mosquitto import Mosquitto
from gateway.embedded.ports import free_port
from gateway.embedded.postgres import Postgres
from gateway.settings import Settings
from gateway.sources.mqtt import MqttPublisher
from gateway.store.devices import upsert_devices
from simulators.city import City
from tests.conftest import TEMPLATE, RabbitVhost, _throwaway_database
from tests.support import REPO, publish_until, scalar, serve, sql, wait_until

PROBE = "T-PROBE"  # published until a gateway's session exists; not part of what is compared
START = (datetime.now(UTC) - timedelta(hours=11)).replace(microsecond=0)
SIMULATED = timedelta(hours=9, minutes=30)
END = START + SIMULATED + timedelta(minutes=5)  # the sweep after the traffic


def city() -> City:
    return City(START, containers=44, trucks=3, seed=11)


def traffic() -> list[tuple[str, bytes]]:
    """The city's messages in publishing order, with every 50th published twice (a redelivery, a
    device's retry) and every 200th held back 40 places (late, after later readings of its device)."""
    simulated = city()
    messages = [message for minute in range(1, int(SIMULATED.total_seconds() // 60) + 1)
                for message in simulated.messages_until(START + timedelta(minutes=minute))]  # as time passes
    out: list[tuple[str, bytes]] = []
    held: list[tuple[int, tuple[str, bytes]]] = []
    for index, message in enumerate(messages):
        if index % 200 == 199:
            held.append((index + 40, message))
        else:
            out.append(message)
            if index % 50 == 0:
                out.append(message)
        while held and held[0][0] <= index:
            out.append(held.pop(0)[1])
    out.extend(message for _, message in held)
    return out


TRAFFIC = traffic()


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("differential") / "rules"
    shutil.copytree(REPO / "rules", directory)
    (directory / "data" / "households.yaml").write_text(city().households_yaml())
    return directory


def _environment(settings: Settings, rules_dir: Path, **more: str) -> dict[str, str]:
    return {"WASTEGATE_RULES_DIR": str(rules_dir), "WASTEGATE_API_ENABLED": "false", "WASTEGATE_LEASE_S": "2",
            # Sweeps once, at the end, on what is committed: see the module's docstring.
            "WASTEGATE_SWEEP_S": "86400", "WASTEGATE_BATCH_MAX_SIZE": "200", **more}


def _publish_in_background(url: str, protocol: str = "5") -> threading.Thread:
    def run() -> None:
        with MqttPublisher(url, protocol=protocol) as publisher:
            publisher.publish_many(TRAFFIC)

    thread = threading.Thread(target=run, name="city")
    thread.start()
    return thread


def _stored(url: str) -> int:
    return int(scalar(url, f"SELECT count(*) FROM telemetry WHERE device_id <> '{PROBE}'"))


def _fingerprint(url: str) -> dict[str, Any]:
    sql(url, "DELETE FROM telemetry WHERE device_id = %s", (PROBE,))
    telemetry = sql(url, "SELECT count(*), count(DISTINCT (device_id, time, message_key)), "
                         "md5(string_agg(device_id || '|' || time::text || '|' || encode(message_key, 'hex'), ',' "
                         "ORDER BY device_id, time, message_key)) FROM telemetry")[0]
    incidents = sql(url, "SELECT dedupe_key, status, first_seen_at, resolved_at, occurrences, severity "
                         "FROM incidents WHERE source = 'device_rule' ORDER BY dedupe_key, first_seen_at")
    rejected = sql(url, "SELECT reason, count(*) FROM rejected_messages GROUP BY reason ORDER BY reason")
    per_device = sql(url, "SELECT device_id, count(*) FROM telemetry GROUP BY device_id ORDER BY device_id")
    return {"rows": telemetry[0], "distinct": telemetry[1], "rows_digest": telemetry[2], "incidents": incidents,
            "rejected": rejected, "per_device": per_device}


def _sweep(settings: Settings, rules_dir: Path, at: datetime) -> None:
    """`wastegate sweep --at`: the sweeps once, from what is committed (no replica is running then)."""
    env = {**os.environ, "WASTEGATE_DATABASE_URL": settings.database_url, "WASTEGATE_MQTT_URL": settings.mqtt_url,
           **_environment(settings, rules_dir)}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "sweep", "--at", at.isoformat()], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _stop(*processes: subprocess.Popen[bytes] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


@pytest.fixture(scope="module")
def one_replica(postgres: Postgres, rules_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """(a): what one replica on Mosquitto stores and opens: the reference."""
    with _database(postgres) as url, Mosquitto(tmp_path_factory.mktemp("mosquitto-a")) as broker:
        settings = Settings(database_url=url, mqtt_url=broker.url, _env_file=None)
        _sweep(settings, rules_dir, START)
        gateway = serve(settings, free_port(), **_environment(settings, rules_dir))
        try:
            _wait_subscribed(settings, gateway)
            _publish_in_background(broker.url).join(timeout=120)
            wait_until(lambda: _settled(url), timeout_s=120, interval_s=1.0)
        finally:
            _stop(gateway)
        _sweep(settings, rules_dir, END)
        return _fingerprint(url)


def test_the_reference_run_is_big_enough_and_opens_incidents(one_replica: dict[str, Any]) -> None:
    assert len(TRAFFIC) >= 20000 and len({topic.split("/")[1] for topic, _ in TRAFFIC}) >= 50
    assert one_replica["rows"] == one_replica["distinct"] > 19000 and one_replica["rejected"]
    kinds = {key.split(":")[0] for key, *_ in one_replica["incidents"]}
    assert {"container-full", "container-fire", "container-tilted", "truck-overspeed-school-zone",
            "sensor-silent"} <= kinds, kinds


def test_active_standby_with_the_active_killed_mid_stream_gives_the_same_rows_and_incidents(
        postgres: Postgres, rules_dir: Path, tmp_path: Path, one_replica: dict[str, Any]) -> None:
    with _database(postgres) as url, Mosquitto(tmp_path / "mosquitto-b") as broker:
        settings = Settings(database_url=url, mqtt_url=broker.url, _env_file=None)
        env = _environment(settings, rules_dir, WASTEGATE_STANDBY="true", WASTEGATE_MQTT_CLIENT_ID="pair")
        _sweep(settings, rules_dir, START)
        active = serve(settings, free_port(), **env)
        standby = None
        try:
            _wait_subscribed(settings, active, client_id="pair")
            standby = serve(settings, free_port(), **env)
            publisher = _publish_in_background(broker.url)
            wait_until(lambda: _stored(url) > one_replica["rows"] // 3, timeout_s=120, interval_s=0.02)
            active.send_signal(signal.SIGKILL)
            active.wait(timeout=30)
            killed_at = _stored(url)
            publisher.join(timeout=120)
            wait_until(lambda: _stored(url) >= one_replica["rows"] and _settled(url), timeout_s=120, interval_s=1.0)
        finally:
            _stop(active, standby)
        _sweep(settings, rules_dir, END)
        assert killed_at < one_replica["rows"], "the kill came too late to test anything"
        assert _fingerprint(url) == one_replica


def test_rabbitmq_partitions_with_a_replica_killed_and_one_stopped_give_the_same_rows_and_incidents(
        postgres: Postgres, rules_dir: Path, rabbitmq: RabbitVhost, one_replica: dict[str, Any]) -> None:
    with _database(postgres) as url:
        settings = Settings(database_url=url, mqtt_url=rabbitmq.mqtt_url, _env_file=None)
        env = _environment(settings, rules_dir, WASTEGATE_AMQP_URL=rabbitmq.amqp_url)
        _sweep(settings, rules_dir, START)
        replicas = [serve(settings, free_port(), **env) for _ in range(3)]
        restarted = None
        try:
            # Every partition held, spread over the three.
            wait_until(lambda: scalar(url, "SELECT count(DISTINCT holder) FROM leases WHERE name LIKE 'partition:%' "
                                           "AND holder IS NOT NULL") == 3
                       and scalar(url, "SELECT count(*) FROM leases WHERE name LIKE 'partition:%' "
                                       "AND holder IS NOT NULL") == 16, timeout_s=60)
            publisher = _publish_in_background(rabbitmq.mqtt_url, protocol="3.1.1")
            wait_until(lambda: _stored(url) > one_replica["rows"] // 4, timeout_s=120, interval_s=0.02)
            replicas[1].send_signal(signal.SIGKILL)
            replicas[1].wait(timeout=30)
            killed_at = _stored(url)
            restarted = serve(settings, free_port(), **env)
            wait_until(lambda: _stored(url) > one_replica["rows"] // 2, timeout_s=120, interval_s=0.02)
            _stop(replicas[2])  # a clean stop: its partitions move to the others at once
            stopped_at = _stored(url)
            publisher.join(timeout=120)
            wait_until(lambda: _stored(url) >= one_replica["rows"] and _settled(url), timeout_s=180, interval_s=1.0)
            moved = int(scalar(url, "SELECT max(epoch) FROM leases WHERE name LIKE 'partition:%'"))
        finally:
            _stop(replicas[0], replicas[2], restarted)
        _sweep(settings, rules_dir, END)
        assert killed_at < stopped_at < one_replica["rows"], "the kill and the stop came too late to test anything"
        assert moved > 1  # partitions changed hands
        assert _fingerprint(url) == one_replica


# -- helpers ----------------------------------------------------------------------------------------------------


class _database:
    """A fresh migrated database, with the city's devices registered."""

    def __init__(self, postgres: Postgres) -> None:
        self._databases = _throwaway_database(postgres, "differential", TEMPLATE)

    def __enter__(self) -> str:
        url = next(self._databases)
        upsert_devices(url, city().registered_devices())
        return url

    def __exit__(self, *exc: object) -> None:
        next(self._databases, None)


def _wait_subscribed(settings: Settings, process: subprocess.Popen[bytes], client_id: str = "wastegate-shutdown-test",
                     ) -> None:
    """Until the gateway's session exists on the broker, what is published goes nowhere: wait for its lease."""
    name = f"mqtt:{client_id}"
    wait_until(lambda: process.poll() is not None or scalar(settings.database_url,
               "SELECT count(*) FROM leases WHERE name = %s AND holder IS NOT NULL", (name,)) == 1, timeout_s=60)
    assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
    probe = (f"trucks/{PROBE}/telemetry", json.dumps({"ts": START.isoformat(), "lat": 41.0, "lon": 2.0}))
    publish_until(settings.mqtt_url, [probe], lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry"))


_last_seen: dict[str, tuple[int, int]] = {}


def _settled(url: str) -> bool:
    """The same stored and dead-lettered counts as a second ago: everything received is committed."""
    now = (_stored(url), int(scalar(url, "SELECT count(*) FROM rejected_messages")))
    before = _last_seen.get(url)
    _last_seen[url] = now
    return before == now and now[0] > 0
