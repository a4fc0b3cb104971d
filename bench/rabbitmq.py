"""Scale-out figures, in the same run as the rest: RabbitMQ partitions (the bare AMQP consumer's drain rate,
the path's limit; one and two gateway replicas) and the take-over times after a SIGKILL (an MQTT standby
taking the lease; the survivors taking a dead replica's partitions)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench import scenarios
from bench.scenarios import REPO
from gateway.embedded.rabbitmq import RabbitMQ
from gateway.profiles.loader import load_profiles
from gateway.sources.amqp import AmqpSourceConfig

PARTITIONS = 16
ELSEWHERE = "other-host/1/bench/1"  # a replica id its peers cannot see die: they wait for its leases


def _vhost(node: RabbitMQ, name: str) -> tuple[str, str]:
    node.ctl("add_vhost", name)
    node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return (f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/{name}",
            f"mqtt://{name}%3Aguest:guest@127.0.0.1:{node.mqtt_port}")


def _source(amqp_url: str) -> AmqpSourceConfig:
    return AmqpSourceConfig(url=amqp_url, subscriptions=tuple(load_profiles(REPO / "device_profiles").subscriptions),
                            partitions=PARTITIONS)


async def _declare(amqp_url: str) -> None:
    source = _source(amqp_url).build()
    await source.start()
    await source.close()


def amqp_limit(node: RabbitMQ, items_file: Path, count: int) -> dict[str, Any]:
    """The gateway's AMQP source alone, consuming every partition and acknowledging per batch, draining a
    backlog of `count` messages that devices published over MQTT: that path's limit."""
    amqp_url, mqtt_url = _vhost(node, "bench-limit")
    asyncio.run(_declare(amqp_url))
    scenarios._published(scenarios._publish(mqtt_url, items_file, protocol="3.1.1"))

    async def drain() -> tuple[int, float]:
        source = _source(amqp_url).build()
        await source.start()
        started = time.time()
        for partition in range(PARTITIONS):
            await source.consume(partition)
        received, never = 0, asyncio.Event()
        while received < count:
            batch = await source.next_batch(1000, 0.05, never)
            received += len(batch)
            source.ack(batch)
        elapsed = time.time() - started
        await source.close()
        return received, elapsed

    received, elapsed = asyncio.run(drain())
    node.ctl("delete_vhost", "bench-limit")
    return {"messages": received, "seconds": round(elapsed, 2), "msg_per_s": round(received / elapsed)}


def amqp_end_to_end(node: RabbitMQ, database_url: str, items_file: Path, count: int, env: dict[str, str],
                    replicas: int) -> dict[str, Any]:
    """`replicas` gateways on RabbitMQ partitions draining a backlog of `count` messages: from the first
    message received to the last one committed."""
    name = f"bench-e2e-{replicas}"
    amqp_url, mqtt_url = _vhost(node, name)
    asyncio.run(_declare(amqp_url))
    scenarios._published(scenarios._publish(mqtt_url, items_file, protocol="3.1.1"))
    base = scenarios._count(database_url)
    restarted = time.time()
    gateways = [scenarios.serve(env | {"WASTEGATE_AMQP_URL": amqp_url, "WASTEGATE_DATABASE_URL": database_url},
                                f"bench-amqp-{i}") for i in range(replicas)]
    try:
        scenarios.wait_until(lambda: scenarios._count(database_url) >= base + count, timeout_s=900, interval_s=0.1)
    finally:
        for gateway in gateways:
            gateway.terminate()
            gateway.wait(timeout=120)
    node.ctl("delete_vhost", name)
    elapsed = scenarios.drain_seconds(database_url, restarted)
    return {"messages": count, "seconds": round(elapsed, 2), "msg_per_s": round(count / elapsed),
            "replicas": replicas}


def _until(condition: Callable[[], bool], timeout_s: float = 120) -> float:
    started = time.monotonic()
    scenarios.wait_until(condition, timeout_s=timeout_s, interval_s=0.05)
    return time.monotonic() - started


def _scalar(database_url: str, statement: str) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(statement).fetchone()
    return row[0] if row else None


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def standby_takeover(mqtt_url: str, database_url: str, env: dict[str, str], lease_s: float = 15.0) -> dict[str, Any]:
    """Active–standby on Mosquitto with the default lease: the active one SIGKILLed; seconds until the
    standby holds the MQTT session's lease (the active one on "another host": its lease must expire)."""
    base = env | {"WASTEGATE_MQTT_URL": mqtt_url, "WASTEGATE_DATABASE_URL": database_url, "WASTEGATE_STANDBY": "true",
                  "WASTEGATE_LEASE_S": str(lease_s)}
    active = scenarios.serve(base | {"WASTEGATE_REPLICA_ID": ELSEWHERE}, "bench-pair")
    standby = None
    try:
        _until(lambda: _scalar(database_url, "SELECT holder FROM leases WHERE name = 'mqtt:bench-pair'") == ELSEWHERE)
        standby = scenarios.serve(base, "bench-pair")
        time.sleep(2.0)  # waiting on the lease
        _kill(active)
        took = _until(lambda: _scalar(database_url, "SELECT holder FROM leases WHERE name = 'mqtt:bench-pair'")
                      not in (None, ELSEWHERE))
    finally:
        for process in (active, standby):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
    return {"lease_s": lease_s, "takeover_s": round(took, 2)}


def partition_takeover(node: RabbitMQ, database_url: str, env: dict[str, str],
                       lease_s: float = 15.0) -> dict[str, Any]:
    """Two replicas on RabbitMQ partitions, one SIGKILLed: seconds until the survivor holds all partitions
    (the dead one on "another host": its heartbeat must go stale and its leases expire)."""
    amqp_url, _ = _vhost(node, "bench-takeover")
    base = env | {"WASTEGATE_AMQP_URL": amqp_url, "WASTEGATE_DATABASE_URL": database_url,
                  "WASTEGATE_LEASE_S": str(lease_s)}
    doomed = scenarios.serve(base | {"WASTEGATE_REPLICA_ID": ELSEWHERE}, "bench-amqp-doomed")
    survivor = scenarios.serve(base, "bench-amqp-survivor")
    held = ("SELECT count(*) FROM leases WHERE name LIKE 'partition:%' AND holder IS NOT NULL "
            f"AND holder <> '{ELSEWHERE}'")
    try:
        _until(lambda: _scalar(database_url, f"SELECT count(*) FROM leases WHERE holder = '{ELSEWHERE}' "
                                             "AND name LIKE 'partition:%'") > 0
               and _scalar(database_url, held) > 0)
        _kill(doomed)
        took = _until(lambda: _scalar(database_url, held) == PARTITIONS)
    finally:
        for process in (doomed, survivor):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
    node.ctl("delete_vhost", "bench-takeover")
    return {"lease_s": lease_s, "takeover_s": round(took, 2)}
