"""The benchmark scenarios. Each returns a dict of figures; `bench/run.py` runs them in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.zones import generated_zones
from gateway.events import Reading
from gateway.rules.geofence import GeofenceConfig
from gateway.rules.zones import Zone
from gateway.sources.mqtt import BrokerAddress

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def wait_until(condition: Any, timeout_s: float, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout_s}s")
        time.sleep(interval_s)


def _publish(url: str, path: Path, rate: float = 0.0, protocol: str = "5") -> subprocess.Popen[str]:
    args = [PYTHON, "-m", "bench.publisher", url, str(path)] + ([str(rate)] if rate else [])
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "BENCH_MQTT_PROTOCOL": protocol})


def _published(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=900)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _session_client(url: str, client_id: str) -> paho.Client:
    """A paho MQTT 5 client with a persistent session, as the gateway has."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    address = BrokerAddress.parse(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect(address.host, address.port, clean_start=False, properties=properties)
    return client


def forget_session(url: str, client_id: str) -> None:
    """Ends a scenario's persistent session. Left in place, the broker would go on queueing every later
    scenario's traffic for it, and write that queue to disk every second (the embedded broker's
    `autosave_interval`): work, and pauses, that belong to no scenario."""
    address = BrokerAddress.parse(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.connect(address.host, address.port, clean_start=True)  # no expiry given: gone at disconnect
    client.loop_start()
    wait_until(client.is_connected, timeout_s=10, interval_s=0.02)
    client.disconnect()
    client.loop_stop()


TOPICS = [("trucks/+/telemetry", 1), ("containers/+/telemetry", 1), ("application/+/device/+/event/+", 1)]


def prepare_session(url: str, client_id: str) -> None:
    """The session and its subscription, then away while the backlog is published into it."""
    subscribed = threading.Event()
    client = _session_client(url, client_id)
    client.on_subscribe = lambda *args: subscribed.set()
    client.subscribe(TOPICS)
    client.loop_start()
    subscribed.wait(10)
    client.disconnect()
    client.loop_stop()


def limit(url: str, items_file: Path, count: int) -> dict[str, Any]:
    """A bare paho QoS 1 subscriber that only counts, draining a backlog of `count` messages that the
    broker queued for its session: the drain rate of one Python process, whatever the publisher's speed."""
    prepare_session(url, "bench-limit")
    _published(_publish(url, items_file))
    received = 0
    done = threading.Event()

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= count:
            done.set()

    started = time.time()
    client = _session_client(url, "bench-limit")
    client.on_message = on_message
    client.loop_start()
    done.wait(timeout=600)
    elapsed = time.time() - started
    client.disconnect()
    client.loop_stop()
    forget_session(url, "bench-limit")
    return {"messages": received, "seconds": round(elapsed, 2), "msg_per_s": round(received / elapsed)}


def serve(settings_env: dict[str, str], client_id: str) -> subprocess.Popen[bytes]:
    """A gateway as shipped (the device limit on), with the rules of `WASTEGATE_RULES_DIR` (the benchmark's
    rules directory: the shipped rules and the visit layer)."""
    env = {**os.environ, "WASTEGATE_API_ENABLED": "false", "WASTEGATE_BATCH_MAX_SIZE": "1000",
           "WASTEGATE_PROFILES_DIR": str(REPO / "device_profiles"), "WASTEGATE_RULES_DIR": str(REPO / "rules"),
           "WASTEGATE_SERVICES_FILE": str(REPO / "services.yaml"), **settings_env,
           "WASTEGATE_MQTT_CLIENT_ID": client_id}
    return subprocess.Popen([PYTHON, "-m", "gateway.cli", "serve"], cwd=REPO, env=env)


def _count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM telemetry) + (SELECT count(*) FROM rejected_messages)"
                           ).fetchone()
    return int(row[0]) if row else 0


def _probe(url: str, database_url: str) -> None:
    """Waits until the gateway(s) store a message: then they have subscribed."""
    from gateway.sources.mqtt import MqttPublisher

    probe = ("trucks/PROBE/telemetry", json.dumps({"ts": datetime.now(UTC).isoformat(), "lat": 41.0, "lon": 2.0}))

    def stored() -> bool:
        with MqttPublisher(url) as publisher:
            publisher.publish_many([probe])
        return _count(database_url) >= 1

    wait_until(stored, timeout_s=60, interval_s=0.5)


def end_to_end(url: str, database_url: str, items_file: Path, count: int, env: dict[str, str],
               replicas: int = 1) -> dict[str, Any]:
    """The gateway(s) with the shipped profiles and rules draining a backlog of `count` messages queued in
    their persistent session: from the first message received to the last one committed."""
    def start() -> list[subprocess.Popen[bytes]]:
        # Throughput only: Mosquitto deals the group out in turn, which a real deployment refuses (see the
        # README's "Scaling out"); saying it is dealt by topic lets both replicas consume here.
        shared = {"WASTEGATE_MQTT_SHARED_GROUP": "bench", "WASTEGATE_MQTT_SHARED_BY_TOPIC": "true"} \
            if replicas > 1 else {}
        return [serve(env | shared, f"bench-gw-{replicas}-{i}") for i in range(replicas)]

    def stop(gateways: list[subprocess.Popen[bytes]]) -> None:
        for gateway in gateways:
            gateway.terminate()
            gateway.wait(timeout=120)

    gateways = start()
    try:
        _probe(url, database_url)  # their sessions and subscriptions exist
    finally:
        stop(gateways)
    base = _count(database_url)
    _published(_publish(url, items_file))
    restarted = time.time()
    gateways = start()
    try:
        wait_until(lambda: _count(database_url) >= base + count, timeout_s=900, interval_s=0.1)
    finally:
        stop(gateways)
    for i in range(replicas):
        forget_session(url, f"bench-gw-{replicas}-{i}")
    elapsed = drain_seconds(database_url, restarted)
    return {"messages": count, "seconds": round(elapsed, 2), "msg_per_s": round(count / elapsed),
            "replicas": replicas}


def drain_seconds(database_url: str, since: float) -> float:
    """From the first message received after `since` (epoch s) to the last commit."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)) - min(received_at)) "
                           "FROM telemetry WHERE received_at >= to_timestamp(%s)", (since,)).fetchone()
    return float(row[0]) if row and row[0] else 0.0


def naive(url: str, database_url: str, items_file: Path, count: int, rules_dir: Path) -> dict[str, Any]:
    """The naive pipeline draining the same kind of backlog, its loop over the zones of `rules_dir`."""
    def naive_process(mode: str) -> subprocess.Popen[str]:
        return subprocess.Popen([PYTHON, "-m", "bench.naive", url, database_url, str(count), mode, str(rules_dir)],
                                cwd=REPO, stdout=subprocess.PIPE, text=True)

    prepare = naive_process("prepare")
    prepare.communicate(timeout=60)
    _published(_publish(url, items_file))
    out, _ = naive_process("drain").communicate(timeout=900)
    forget_session(url, "bench-naive")
    result = json.loads(out.strip().splitlines()[-1])
    elapsed = result["last"] - result["first"]
    return {"messages": result["stored"], "seconds": round(elapsed, 2), "msg_per_s": round(result["stored"] / elapsed)}


def latency(url: str, database_url: str, items_file: Path, rate: float, env: dict[str, str]) -> dict[str, Any]:
    """At a paced rate: publish → commit per message (commit timestamps), and publish → incident row."""
    gateway = serve(env, "bench-latency")
    try:
        _probe(url, database_url)
        started = datetime.now(UTC)
        _published(_publish(url, items_file, rate))
        time.sleep(2.0)
    finally:
        gateway.terminate()
        gateway.wait(timeout=60)
        forget_session(url, "bench-latency")
    with psycopg.connect(database_url) as conn:
        delays = [row[0] for row in conn.execute(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - time) * 1000 FROM telemetry "
            "WHERE received_at >= %s AND device_id <> 'PROBE'", (started,)).fetchall()]
        incident_delays = [row[0] for row in conn.execute(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - first_seen_at) * 1000 FROM incidents "
            "WHERE created_at >= %s AND rule_id = 'container-fire'", (started,)).fetchall()]
    cuts = quantiles([float(d) for d in delays], n=100)
    result: dict[str, Any] = {"rate_msg_per_s": round(rate), "messages": len(delays), "p50_ms": round(cuts[49], 1),
                              "p99_ms": round(cuts[98], 1), "max_ms": round(max(float(d) for d in delays), 1)}
    if incident_delays:
        result["incident_max_ms"] = round(max(float(d) for d in incident_delays), 1)
        result["incidents"] = len(incident_delays)
    return result


def fire_messages(count: int) -> list[tuple[str, bytes]]:
    """Readings that open an incident at once (a container at 80 °C), one per container."""
    return [(f"containers/BC-{i:05d}/telemetry",
             json.dumps({"ts": datetime.now(UTC).isoformat(), "temperature_c": 80.0}).encode()) for i in range(count)]


def rule_cost(zone_counts: tuple[int, ...] = (100, 1000, 10000), readings: int = 20000) -> dict[str, Any]:
    """Per-reading time of a geofence rule (inside mode with a condition) against N zones."""
    base = datetime.now(UTC)
    fixes = [Reading(f"T{i % 50}", base + timedelta(seconds=i), base, b"k", "truck",
                     lat=41.34 + (i * 7919 % 8000) / 100000, lon=2.08 + (i * 104729 % 12000) / 100000, speed_kmh=25.0)
             for i in range(readings)]
    result: dict[str, Any] = {}
    for count in zone_counts:
        zones = [Zone(f"g/{i}", "g", f"zone {i}", {"speed_limit_kmh": 20}, geometry)
                 for i, geometry in enumerate(generated_zones(count))]
        rule = GeofenceConfig.model_validate({
            "id": "bench", "kind": "geofence", "mode": "inside", "zones": {"layers": ["g"]},
            "condition": "speed_kmh > zone.speed_limit_kmh", "min_inside": "5s",
            "incident": {"service_code": "x", "title": "t"}}).build({"g": zones})
        from gateway.rules.model import reading_context

        states: dict[str, Any] = {}
        started = time.perf_counter()
        for fix in fixes:
            outcome = rule.evaluate(fix, reading_context(fix, None), states.get(fix.device_id), fix.time)
            states[fix.device_id] = outcome.state
        result[f"zones_{count}_us_per_reading"] = round((time.perf_counter() - started) / readings * 1e6, 1)
    first, last = zone_counts[0], zone_counts[-1]
    result["ratio_last_to_first"] = round(result[f"zones_{last}_us_per_reading"]
                                          / result[f"zones_{first}_us_per_reading"], 2)
    return result


def rss_for_devices(devices: int) -> dict[str, Any]:
    """Resident memory of a gateway's rule engine holding state for N devices (in a fresh process)."""
    out = subprocess.run([PYTHON, "-m", "bench.state_memory", str(devices)], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


__all__ = ["end_to_end", "fire_messages", "latency", "limit", "naive", "rss_for_devices", "rule_cost"]
