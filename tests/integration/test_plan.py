"""`wastegate plan` on real PostgreSQL with the month simulator's containers: the forecasts are the
`container-will-overflow` rule's own states, committed; the plan serves every container due (on its
schedule or forecast full) exactly once, keeps each truck within its capacity, and writes GeoJSON, GPX and
a driver's list. A day that the trucks cannot carry is refused with what was not served."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import MappingProxyType
from xml.etree import ElementTree

import psycopg
import pytest

from gateway.devices import Device
from gateway.rules.loader import load_rules
from gateway.rules.model import ReadingContext
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from gateway.store.rule_state import save_rule_states
from simulators.month import MADRID, SCHEDULES, Month
from tests.support import REPO

START = datetime(2026, 3, 2, tzinfo=MADRID).astimezone(UTC)  # a Monday
DAY = date(2026, 3, 5)  # the Thursday after
WEEKDAY = "thu"


def city(database_url: str, truck_litres: int) -> list[Device]:
    month = Month(START, days=4, containers=60, trucks=0, households=0, seed=21)
    containers = [Device(d.device_id, d.profile, d.kind, d.name, d.lat, d.lon,
                         MappingProxyType({**d.attributes, "capacity_l": 2400,
                                           "collection_days": list(SCHEDULES[i % 3])}))
                  for i, d in enumerate(month.devices()) if d.kind == "container"]
    trucks = [Device(f"T{i}", "truck", "truck", f"Truck {i}",
                     attributes=MappingProxyType({"capacity_l": truck_litres, "depot": "Depot Poblenou"}))
              for i in range(1, 4)]
    upsert_devices(database_url, [*containers, *trucks])
    rule = load_rules(REPO / "rules").by_id["container-will-overflow"]
    shift = datetime.combine(DAY, time(6, 0), MADRID)
    states: dict[tuple[str, str], dict[str, object]] = {}
    by_id = {c.device_id: c for c in containers}
    state_of: dict[str, object] = {}
    for reading in month.history():
        if reading.fill_pct is None or reading.time >= shift:
            continue
        outcome = rule.evaluate(reading, ReadingContext(reading, by_id[reading.device_id]),
                                state_of.get(reading.device_id), reading.time)  # type: ignore[arg-type]
        state_of[reading.device_id] = outcome.state
    for device_id, state in state_of.items():
        states[(rule.id, device_id)] = rule.dump_state(state)  # type: ignore[arg-type]

    async def save() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await save_rule_states(conn, states)
            await conn.commit()

    asyncio.run(save())
    return containers


def plan(settings: Settings, out: Path) -> subprocess.CompletedProcess[str]:
    env = {"WASTEGATE_DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "plan", "--date", DAY.isoformat(), "--out", str(out)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(400)
def test_the_plan_serves_every_due_container_once_within_capacity(settings: Settings, tmp_path: Path) -> None:
    containers = city(settings.database_url, truck_litres=16_000)
    done = plan(settings, tmp_path / "plan")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "plan" / "plan.json").read_text())
    served = [stop for route in summary["routes"] for stop in route["stops"]]
    assert len(served) == len(set(served)), "a container is on two routes"
    scheduled = {c.device_id for c in containers if WEEKDAY in c.attributes["collection_days"]}
    assert scheduled <= set(served)
    forecast = set(served) - scheduled
    assert forecast, "no container was due by its forecast alone"
    for route in summary["routes"]:
        assert route["litres"] <= route["capacity_l"]
    assert sum(r["litres"] for r in summary["routes"]) > 16_000  # one truck could not carry it all
    assert summary["not_served"] == []

    geo = json.loads((tmp_path / "plan" / "plan.geojson").read_text())
    lines = [f for f in geo["features"] if f["geometry"]["type"] == "LineString"]
    assert len(lines) == len(summary["routes"])
    for route in summary["routes"]:
        gpx = ElementTree.parse(tmp_path / "plan" / f"{route['truck']}.gpx")
        points = gpx.getroot().findall(".//{http://www.topografix.com/GPX/1/1}rtept")
        assert len(points) == len(route["stops"]) + 2  # the depot, the stops, the transfer station
        printable = (tmp_path / "plan" / f"{route['truck']}.html").read_text()
        assert all(stop in printable for stop in route["stops"]) and "Ecoparc del Mediterrani" in printable
    assert "containers on" in done.stdout


def test_a_day_the_trucks_cannot_carry_is_refused_with_what_is_left(settings: Settings, tmp_path: Path) -> None:
    city(settings.database_url, truck_litres=3_000)
    done = plan(settings, tmp_path / "plan")
    assert done.returncode == 3
    assert "not served" in done.stderr
    summary = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert summary["not_served"]
    for route in summary["routes"]:
        assert route["litres"] <= route["capacity_l"] == 3_000
