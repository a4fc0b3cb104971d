"""Rules end to end on a real Mosquitto and PostgreSQL: incidents opened and resolved once, state that
survives a restart, late and redelivered data, the database's one-open-incident guarantee, and reloads."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import cast

from gateway.devices import Device
from gateway.events import Finding
from gateway.rules.threshold import ThresholdRule
from gateway.settings import Settings
from gateway.store.cases import apply_findings
from gateway.store.devices import upsert_devices
from gateway.store.pool import open_pool
from tests.support import REPO, publish, running_gateway, scalar, sql, wait_until

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def container(minutes: float, fill: float | None = None, **fields: object) -> tuple[str, str]:
    payload: dict[str, object] = {"ts": (START + timedelta(minutes=minutes)).isoformat(), **fields}
    if fill is not None:
        payload["fill_pct"] = fill
    return "containers/C-0001/telemetry", json.dumps(payload)


def register_container(url: str) -> None:
    upsert_devices(url, [Device("C-0001", "container", "container", "Mallorca 401", 41.4036, 2.1744,
                                MappingProxyType({"bin_depth_mm": 1200}))])


def incidents(url: str) -> list[tuple[object, ...]]:
    return sql(url, "SELECT rule_id, status, occurrences, severity, device_id FROM incidents ORDER BY id")


def events(url: str) -> list[tuple[object, ...]]:
    return sql(url, "SELECT kind, from_status, to_status FROM incident_events ORDER BY id")


def test_container_full_opens_escalates_and_resolves_once(settings: Settings) -> None:
    url = settings.database_url
    register_container(url)
    stream = [container(0, 82), container(10, 85), container(25, 88), container(40, 96), container(60, 70),
              container(80, 40)]
    with running_gateway(settings):
        publish(settings.mqtt_url, stream)
        wait_until(lambda: incidents(url) and incidents(url)[0][1] == "resolved")
        publish(settings.mqtt_url, stream)  # all of it delivered a second time
        time.sleep(1.0)
    assert incidents(url) == [("container-full", "resolved", 1, "major", "C-0001")]
    assert events(url) == [("created", None, "open"), ("assignment", None, None), ("severity", None, None),
                           ("status", "open", "resolved")]
    row = sql(url, "SELECT title, lat, lon, first_seen_at, resolved_at FROM incidents")[0]
    assert row[0] == "Container Mallorca 401 is 88% full" and (row[1], row[2]) == (41.4036, 2.1744)
    assert (row[3], row[4]) == (START + timedelta(minutes=25), START + timedelta(minutes=80))


def test_a_pending_duration_survives_a_restart(settings: Settings) -> None:
    url = settings.database_url
    register_container(url)
    with running_gateway(settings):  # tilted for 4 of the 5 minutes the rule asks for
        publish(settings.mqtt_url, [container(0, tilted=True), container(4, tilted=True)])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 2)
    assert incidents(url) == []
    assert scalar(url, "SELECT count(*) FROM rule_state WHERE rule_id = 'container-tilted'") == 1
    with running_gateway(settings):  # one more minute after the restart, not five
        publish(settings.mqtt_url, [container(5, tilted=True)])
        wait_until(lambda: incidents(url))
    assert incidents(url) == [("container-tilted", "open", 1, "major", "C-0001")]


def test_a_late_reading_is_stored_but_does_not_resolve(settings: Settings) -> None:
    url = settings.database_url
    register_container(url)
    with running_gateway(settings):
        publish(settings.mqtt_url, [container(0, 90), container(30, 91)])
        wait_until(lambda: incidents(url))
        publish(settings.mqtt_url, [container(20, 10)])  # older than 30, and below the clear level
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 3)
        time.sleep(0.5)
    assert incidents(url) == [("container-full", "open", 1, "minor", "C-0001")]


def test_the_database_keeps_one_open_incident_per_cause(settings: Settings) -> None:
    finding = Finding("container-full", "C-0001", "open", START, "container_full", title="Full", device_id="C-0001")

    async def two_replicas_at_once() -> None:
        pool = await open_pool(settings.database_url, min_size=2, max_size=2)
        try:
            async def replica() -> None:
                async with pool.connection() as conn, conn.transaction():
                    await apply_findings(conn, [finding])
                    await asyncio.sleep(0.2)  # hold the transaction open while the other one tries

            await asyncio.gather(replica(), replica())
        finally:
            await pool.close()

    asyncio.run(two_replicas_at_once())
    assert incidents(settings.database_url) == [("container-full", "open", 2, "minor", "C-0001")]
    assert [e[0] for e in events(settings.database_url)] == ["created", "occurrence"]


def test_rule_files_reload_and_a_bad_edit_is_refused(settings: Settings, tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules_dir)
    settings = settings.model_copy(update={"rules_dir": rules_dir, "rules_reload_s": 0.2})
    url = settings.database_url
    register_container(url)
    with running_gateway(settings) as gateway:
        containers = rules_dir / "containers.yaml"
        text = containers.read_text()
        containers.write_text(text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >= 30.0"))
        def condition() -> str:
            return cast(ThresholdRule, gateway.rules.by_id["container-full"]).condition.source

        wait_until(lambda: condition() == "fill_pct >= 30.0")
        containers.write_text(text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >="))
        time.sleep(1.0)  # refused: the running rules stay
        assert condition() == "fill_pct >= 30.0"
        publish(settings.mqtt_url, [container(0, 40), container(30, 41)])
        wait_until(lambda: incidents(url))
    assert incidents(url)[0][:2] == ("container-full", "open")


def test_door_to_door_collection_on_an_injected_clock(settings: Settings) -> None:
    """Monday 2026-01-05 in Barcelona: H-0002 lifted in its window, H-0001 not, and a stray tag."""
    url = settings.database_url
    settings = settings.model_copy(update={"sweep_s": 0.2})
    monday_0700 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    now = [monday_0700]
    upsert_devices(url, [Device("T-5", "truck", "truck", "Truck 5",
                                attributes=MappingProxyType({"service_area": "Eixample"}))])

    def lift(minutes: float, tag: str) -> tuple[str, str]:
        ts = (monday_0700 + timedelta(minutes=minutes)).isoformat()
        return "trucks/T-5/telemetry", json.dumps({"ts": ts, "lat": 41.3963, "lon": 2.1650, "event": "bin_lift",
                                                    "rfid": tag, "weight_kg": 9.5})

    with running_gateway(settings, clock=lambda: now[0]):
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rule_state WHERE rule_id = 'door-to-door'") == 3)
        now[0] = monday_0700 + timedelta(hours=1)
        publish(settings.mqtt_url, [lift(60, "E2003412010B0002"), lift(65, "DEADBEEF")])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents") == 1)
        now[0] = monday_0700 + timedelta(hours=5, minutes=31)  # 12:31 local: window and grace are over
        wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents") == 2)
        time.sleep(0.5)  # more sweeps: still judged once
    rows = sql(url, "SELECT service_code, subject, address, title, first_seen_at FROM incidents ORDER BY id")
    assert [r[:3] for r in rows] == [("unknown_tag", "tag:DEADBEEF", None),
                                     ("missed_collection", "household:H-0001", "Carrer de Mallorca 401")]
    assert rows[1][3] == "Missed collection at Carrer de Mallorca 401 on 2026-01-05"
    assert rows[1][4] == datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # 12:00 in Barcelona, the window's end


def test_findings_and_telemetry_of_a_batch_commit_together(settings: Settings) -> None:
    """A finding the database refuses takes the batch's telemetry down with it: nothing half-stored."""
    from gateway.events import Batch, DeviceSeen, Reading
    from gateway.store.batch import commit_batch

    reading = Reading("T1", START, START, b"key", "truck", lat=41.4, lon=2.1)
    refused = Finding("r", "T1", "open", START, "x", title="t", lat=200.0, lon=2.1)  # violates a CHECK

    async def commit() -> None:
        pool = await open_pool(settings.database_url)
        try:
            await commit_batch(pool, Batch([reading], [], [DeviceSeen("T1", "truck", "truck", START)], [refused]))
        finally:
            await pool.close()

    import psycopg
    import pytest

    with pytest.raises(psycopg.errors.CheckViolation):
        asyncio.run(commit())
    assert scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 0
    assert scalar(settings.database_url, "SELECT count(*) FROM devices") == 0
