"""Several replicas on real Mosquitto and PostgreSQL: the sweeps are decided from what is committed by the
one replica holding the sweep lease, so a broker that deals messages out in turn can no longer make a
replica open a false "sensor silent" or "missed collection" (the audit's two cases); a commit made under a
lease that changed hands is refused; a second active replica on the same MQTT session is refused at start;
a standby takes over the session and the rules' states of an active replica killed mid-stream."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from gateway.app import Gateway, StartRefused
from gateway.devices import Device
from gateway.embedded.ports import free_port
from gateway.events import Batch, DeviceSeen, Fence, Reading
from gateway.settings import Settings
from gateway.store.batch import commit_batch
from gateway.store.devices import upsert_devices
from gateway.store.leases import Fenced, acquire_lease
from gateway.store.pool import open_pool
from tests.support import publish, publish_until, running_gateway, scalar, serve, sql, wait_until

MONDAY_0700 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # 07:00 in Barcelona: H-0001 and H-0002 are due 06–12


def _reading(device: str, at: datetime) -> tuple[str, str]:
    return f"containers/{device}/telemetry", json.dumps({"ts": at.isoformat(), "fill_pct": 40})


def _lift(tag: str, at: datetime) -> tuple[str, str]:
    return "trucks/T-5/telemetry", json.dumps({"ts": at.isoformat(), "lat": 41.40, "lon": 2.17, "event": "bin_lift",
                                               "rfid": tag, "weight_kg": 9.5})


@pytest.fixture
def two_replicas_dealt_in_turn(settings: Settings) -> Iterator[tuple[list[datetime], list[Gateway]]]:
    """Two replicas on one Mosquitto shared subscription, which deals its messages out in turn, on one
    injected clock. (Said to be dealt by topic so that the second may start: this is the split the audit
    ran into, and what the sweeps must now be right under.)"""
    url = settings.database_url
    containers = [Device(d, "container", "container", f"Aragó {d}", 41.39, 2.16,
                         MappingProxyType({"expected_interval_s": 600})) for d in ("C-1", "C-2", "C-3")]
    truck = Device("T-5", "truck", "truck", "Truck 5", attributes=MappingProxyType({"service_area": "Eixample"}))
    upsert_devices(url, [*containers, truck])
    now = [MONDAY_0700]
    shared = {"mqtt_shared_group": "gateways", "mqtt_shared_by_topic": True, "sweep_s": 0.2, "lease_s": 3.0}
    first = settings.model_copy(update={**shared, "mqtt_client_id": "replica-a", "api_enabled": False})
    second = settings.model_copy(update={**shared, "mqtt_client_id": "replica-b", "api_enabled": False})
    with running_gateway(first, clock=lambda: now[0]) as a, running_gateway(second, clock=lambda: now[0]) as b:
        yield now, [a, b]


def test_a_split_stream_opens_no_false_silence_and_no_false_missed_collection(
        settings: Settings, two_replicas_dealt_in_turn: tuple[list[datetime], list[Gateway]]) -> None:
    url = settings.database_url
    now, replicas = two_replicas_dealt_in_turn
    wait_until(lambda: scalar(url, "SELECT count(*) FROM rule_state WHERE rule_id = 'door-to-door'") == 3)
    stored = 0

    def step(at: datetime, messages: list[tuple[str, str]]) -> None:
        nonlocal stored
        now[0] = at
        publish(settings.mqtt_url, messages)
        stored += len(messages)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == stored)

    # C-1 and C-2 report every 10 minutes, one after the other, so each replica receives one of them only;
    # C-3 reports once and falls silent. The two households' bins are lifted, one lift to each replica.
    step(MONDAY_0700, [_reading("C-1", MONDAY_0700), _reading("C-2", MONDAY_0700), _reading("C-3", MONDAY_0700)])
    step(MONDAY_0700 + timedelta(minutes=5), [_lift("E2003412010B0001", MONDAY_0700 + timedelta(minutes=5)),
                                              _lift("E2003412010B0002", MONDAY_0700 + timedelta(minutes=6))])
    for tick in range(1, 35):  # until 12:50 in Barcelona: the window and its grace are over
        at = MONDAY_0700 + timedelta(minutes=10 * tick)
        step(at, [_reading("C-1", at), _reading("C-2", at)])
    wait_until(lambda: scalar(url, "SELECT count(*) FROM rule_state WHERE rule_id = 'door-to-door' "
                                   "AND (state->'s'->>'checked')::float = %s",
                              (datetime(2026, 1, 5, 11, 0, tzinfo=UTC).timestamp(),)) == 2)
    wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents") >= 1)

    # Each replica saw a part of the stream: a sweep on its own memory would have found C-1 or C-2 silent,
    # and H-0001 or H-0002 not lifted.
    partial = [{device for device in ("C-1", "C-2") if (g.engine and g.engine.last_seen.get(device)) == at}
               for g in replicas]
    assert all(seen != {"C-1", "C-2"} for seen in partial), partial
    sweeper = sql(url, "SELECT holder FROM leases WHERE name = 'sweeps'")
    assert sweeper[0][0] in {g.replica_id for g in replicas}

    rows = sql(url, "SELECT rule_id, subject, status, first_seen_at FROM incidents ORDER BY id")
    assert rows == [("sensor-silent", "C-3", "open", MONDAY_0700 + timedelta(seconds=600 * 3.5))]


def test_a_commit_under_a_lease_that_changed_hands_is_refused(settings: Settings) -> None:
    """Fencing, not timing: replica A's lease expired and B took it; A's late commit is refused whole."""
    url = settings.database_url

    async def scenario() -> None:
        pool = await open_pool(url)
        try:
            async with pool.connection() as conn:
                first = await acquire_lease(conn, "mqtt:wastegate", "host/1/a", 0.05)
                await asyncio.sleep(0.1)
                second = await acquire_lease(conn, "mqtt:wastegate", "host/2/b", 30)
                assert (first, second) == (1, 2)
                assert await acquire_lease(conn, "mqtt:wastegate", "host/1/a", 30) is None  # B holds it
            at = datetime.now(UTC)
            reading = Reading("C-9", at, at, b"late-commit", "container", fill_pct=50.0)
            late = Batch([reading], devices_seen=[DeviceSeen("C-9", "container", "container", at)],
                         fences=[Fence("mqtt:wastegate", "host/1/a", 1)])
            with pytest.raises(Fenced, match="mqtt:wastegate"):
                await commit_batch(pool, late)
            current = Batch([reading], fences=[Fence("mqtt:wastegate", "host/2/b", 2)])
            assert (await commit_batch(pool, current)).inserted == 1
        finally:
            await pool.close()

    asyncio.run(scenario())
    assert scalar(url, "SELECT count(*) FROM telemetry") == 1
    assert scalar(url, "SELECT count(*) FROM devices WHERE device_id = 'C-9'") == 0  # nothing of the late one


def test_a_second_active_replica_on_the_same_session_is_refused_at_start(settings: Settings) -> None:
    settings = settings.model_copy(update={"lease_s": 1.5, "api_enabled": False})
    with running_gateway(settings) as active:
        second = Gateway(settings)
        with pytest.raises(StartRefused) as refused:
            asyncio.run(second.run(asyncio.Event()))
        assert active.replica_id in str(refused.value) and "WASTEGATE_STANDBY=true" in str(refused.value)
        assert active.source.connected.is_set()  # the active one goes on


def _truck(index: int) -> tuple[str, str]:
    at = STREAM_START + timedelta(milliseconds=index)
    return f"trucks/T{index % 25}/telemetry", json.dumps({"ts": at.isoformat(), "lat": 41.38, "lon": 2.17,
                                                           "seq": index})


STREAM_START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
STREAM = 20000  # several times the receive maximum: the kill lands mid-stream


def test_a_standby_takes_over_the_session_and_the_rules_state_when_the_active_one_is_killed(
        settings: Settings) -> None:
    """Active–standby on Mosquitto: the active one is SIGKILLed mid-stream; the standby, waiting on the
    lease, takes it once it expires (the dead one ran on "another host"), loads the rules' states the dead
    one committed after the standby had started, connects with the same client id and receives what the
    broker kept. Every message is stored once, and a duration begun under the dead replica ends under the
    new one."""
    url = settings.database_url
    upsert_devices(url, [Device("C-0001", "container", "container", "Mallorca 401",
                                attributes=MappingProxyType({"bin_depth_mm": 1200}))])

    def count() -> int:
        return int(scalar(url, "SELECT count(*) FROM telemetry"))

    def tilted(minute: int) -> tuple[str, str]:
        return "containers/C-0001/telemetry", json.dumps(
            {"ts": (STREAM_START + timedelta(minutes=minute)).isoformat(), "tilted": True})

    pair = {"WASTEGATE_STANDBY": "true", "WASTEGATE_LEASE_S": "2", "WASTEGATE_MQTT_CLIENT_ID": "pair",
            "WASTEGATE_API_ENABLED": "false"}
    active = serve(settings, free_port(), WASTEGATE_REPLICA_ID="elsewhere/1/active", **pair)
    standby = None
    try:
        publish_until(settings.mqtt_url, [tilted(0)], lambda: count() == 1)
        standby = serve(settings, free_port(), **pair)
        publish(settings.mqtt_url, [tilted(4)])  # the tilt's duration (5 min) half run, under the active one
        wait_until(lambda: count() == 2)
        assert scalar(url, "SELECT count(*) FROM rule_state WHERE rule_id = 'container-tilted'") == 1
        publisher = threading.Thread(target=publish, args=(settings.mqtt_url, [_truck(i) for i in range(STREAM)]))
        publisher.start()
        wait_until(lambda: count() > STREAM // 5, timeout_s=60, interval_s=0.02)
        active.send_signal(signal.SIGKILL)
        active.wait(timeout=30)
        stored_at_kill = count()
        publisher.join(timeout=120)
        publish(settings.mqtt_url, [tilted(5), tilted(6)])
        wait_until(lambda: count() == STREAM + 4, timeout_s=90)
        wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents") == 1)
    finally:
        for process in (active, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    assert stored_at_kill < STREAM + 2, "the kill came too late to test anything"
    assert scalar(url, "SELECT count(DISTINCT (device_id, time)) FROM telemetry") == STREAM + 4
    holder, epoch = sql(url, "SELECT holder, epoch FROM leases WHERE name = 'mqtt:pair'")[0]
    assert holder is None and epoch == 2  # taken over once, then let go at the standby's clean stop
    rows = sql(url, "SELECT rule_id, first_seen_at FROM incidents")
    assert rows == [("container-tilted", STREAM_START + timedelta(minutes=5))]


def test_a_redelivered_reading_does_not_count_its_finding_again(settings: Settings) -> None:
    """A batch committed, then redelivered (its acknowledgement lost with a replica, a partition moved):
    the reading is stored once, and the finding concluded on it counts once."""
    from gateway.events import Finding

    at = datetime.now(UTC)
    reading = Reading("C-7", at, at, b"once", "container", fill_pct=97.0)
    finding = Finding("unknown-tag", "tag:X", "open", at, "unknown_tag", title="Unregistered tag X",
                      message_key=b"once")

    async def commit_twice() -> None:
        pool = await open_pool(settings.database_url)
        try:
            for _ in range(2):
                await commit_batch(pool, Batch([reading], findings=[finding]))
        finally:
            await pool.close()

    asyncio.run(commit_twice())
    assert sql(settings.database_url, "SELECT occurrences FROM incidents") == [(1,)]
    assert scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 1


def test_a_sweep_from_the_command_line_is_refused_while_a_replica_holds_the_sweeps(settings: Settings) -> None:
    settings = settings.model_copy(update={"api_enabled": False})
    with running_gateway(settings) as replica:
        wait_until(lambda: sql(settings.database_url, "SELECT holder FROM leases WHERE name = 'sweeps'")
                   == [(replica.replica_id,)])
        with pytest.raises(StartRefused, match="the sweeps are"):
            asyncio.run(Gateway(settings).sweep_once(datetime.now(UTC)))
    done = asyncio.run(Gateway(settings).sweep_once(datetime.now(UTC)))  # let go at its clean stop
    assert done == {"findings": 0, "opened": 0, "resolved": 0}


def test_findings_committed_apart_from_their_readings_are_kept(settings: Settings) -> None:
    """A batch the database refused is committed message by message, then its findings on their own: those
    findings are not mistaken for a redelivery's (their readings are not in that last commit)."""
    from gateway.events import Finding

    at = datetime.now(UTC)
    reading = Reading("C-8", at, at, b"apart", "container", fill_pct=97.0)
    finding = Finding("unknown-tag", "tag:Y", "open", at, "unknown_tag", title="Unregistered tag Y",
                      message_key=b"apart")

    async def commit_apart() -> None:
        pool = await open_pool(settings.database_url)
        try:
            await commit_batch(pool, Batch([reading]))
            await commit_batch(pool, Batch(findings=[finding]))
        finally:
            await pool.close()

    asyncio.run(commit_apart())
    assert sql(settings.database_url, "SELECT occurrences FROM incidents") == [(1,)]
