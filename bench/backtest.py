"""The rule lab's replay rate: a fleet's history (100 trucks at one fix per 5 s, with 1,000 street
containers every 10 minutes) stored in PostgreSQL, backtested through the shipped rules.

Prints and writes (`bench/results/backtest-<name>.json`):
- readings/s and peak RSS of a backtest of 1 M and of 10 M stored readings, each in a process of its own
  (memory bounded by the devices, not the range: the two RSS figures are close);
- the same readings replayed from memory through the same rules (the rule stage alone, as the live
  gateway runs it, in batches), and the ratio of the two.

    python -m bench.backtest [--quick]

The goal (issue 15): ≥ 50,000 readings/s, a week of the fleet (12 M readings) in under 4 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import random
import resource
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from shapely import contains_xy, prepare

from gateway.devices import Device, DeviceDirectory
from gateway.events import EMPTY, Reading
from gateway.lab.backtest import Backtest, BacktestPlan, RuleSource, replay, run_plan
from gateway.profiles.loader import load_profiles
from gateway.rules.loader import load_rules
from gateway.rules.zones import load_zone_file
from gateway.sources.replay import HistoryFilter
from gateway.store.devices import upsert_devices
from gateway.store.telemetry import dump_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
START = datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # a Monday, 06:00 in Barcelona
TRUCKS = 100
FIX_S = 5
CONTAINERS = 1000
CONTAINER_S = 600
GOAL = 50_000
_METRES_PER_DEGREE = 111_320.0
# l'Eixample's grid, where the trucks drive (inside the districts layer; past the school zone now and then)
WEST, SOUTH, EAST, NORTH = 2.150, 41.382, 2.178, 41.400
TAGS = [f"E2003412010B{i:04d}" for i in range(1, 7)] + ["E200FFFFFFFF0000"]


def fleet_devices() -> list[Device]:
    trucks = [Device(f"FT{i:03d}", "truck", "truck", f"Truck {i:03d}",
                     attributes=MappingProxyType({"service_area": "Eixample"})) for i in range(TRUCKS)]
    containers = [Device(f"FC-{i:05d}", "container", "container", f"Container {i}",
                         round(SOUTH + (NORTH - SOUTH) * (i % 97) / 97, 6),
                         round(WEST + (EAST - WEST) * (i % 89) / 89, 6), MappingProxyType({"bin_depth_mm": 1200}))
                  for i in range(CONTAINERS)]
    return trucks + containers


def fleet_history(count: int, seed: int = 15) -> Iterator[Reading]:
    """`count` readings in device-time order: every truck's fix each 5 s (driving the grid at 0–45 km/h,
    stopping now and then, lifting bins with RFID tags), each container's report each 10 minutes (filling,
    emptied at random)."""
    rng = random.Random(seed)
    eixample = next(z.geometry for z in load_zone_file(REPO / "rules" / "zones" / "districtes.geojson")
                    if z.name == "Eixample")
    prepare(eixample)
    trucks: list[list[float]] = []
    while len(trucks) < TRUCKS:
        lat, lon = rng.uniform(SOUTH, NORTH), rng.uniform(WEST, EAST)
        if contains_xy(eixample, lon, lat):
            trucks.append([lat, lon, rng.uniform(0, 2 * math.pi), 0])
    fill = [rng.uniform(5, 60) for _ in range(CONTAINERS)]
    ignition = MappingProxyType({"ignition": True})
    emitted = 0
    tick = 0
    per_tick = CONTAINER_S // FIX_S
    while emitted < count:
        at = START + timedelta(seconds=tick * FIX_S)
        for i, truck in enumerate(trucks):
            lat, lon, heading, stopped = truck
            if stopped > 0:
                truck[3] -= 1
                speed = 0.0
            elif rng.random() < 0.004:
                truck[3] = rng.randrange(2, 200)  # a stop of 10 s to a quarter of an hour
                speed = 0.0
            else:
                speed = rng.uniform(15, 45)
                metres = speed / 3.6 * FIX_S
                lat += metres * math.cos(heading) / _METRES_PER_DEGREE
                lon += metres * math.sin(heading) / (_METRES_PER_DEGREE * 0.75)
                if not contains_xy(eixample, lon, lat):  # its district's edge: turn back
                    lat, lon, heading = truck[0], truck[1], heading + math.pi + rng.uniform(-1, 1)
                elif rng.random() < 0.01:  # a corner
                    heading += rng.choice((-math.pi / 2, math.pi / 2))
                truck[0], truck[1], truck[2] = lat, lon, heading
            lift = speed == 0.0 and rng.random() < 0.05
            yield Reading(f"FT{i:03d}", at + timedelta(milliseconds=i), at, _key(emitted), "truck",
                          round(truck[0], 6), round(truck[1], 6), round(speed, 1), None,
                          rfid=rng.choice(TAGS) if lift else None, event="bin_lift" if lift else None,
                          weight_kg=round(rng.uniform(3, 20), 1) if lift else None, extra=ignition)
            emitted += 1
            if emitted >= count:
                return
        if tick % per_tick == 0:
            for c in range(CONTAINERS):
                fill[c] = fill[c] + rng.uniform(0, 1.5) if rng.random() > 0.01 else rng.uniform(0, 10)
                level = min(fill[c], 100.0)
                yield Reading(f"FC-{c:05d}", at + timedelta(milliseconds=200 + c), at, _key(emitted), "container",
                              fill_pct=round(level, 1), distance_mm=round(1200 * (1 - level / 100)),
                              temperature_c=round(rng.uniform(8, 30), 1), battery_pct=80.0, tilted=False,
                              extra=EMPTY)
                emitted += 1
                if emitted >= count:
                    return
        tick += 1


def _key(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=16).digest()


_COPY = ("COPY telemetry (time, device_id, message_key, received_at, profile, lat, lon, speed_kmh, heading_deg, "
         "fill_pct, distance_mm, temperature_c, battery_pct, battery_v, tilted, weight_kg, rfid, event, extra) "
         "FROM STDIN (FORMAT BINARY)")
_TYPES = ["timestamptz", "text", "bytea", "timestamptz", "text", "float8", "float8", "float8", "float8", "float8",
          "float8", "float8", "float8", "float8", "bool", "float8", "text", "text", "jsonb"]


def store_history(database_url: str, count: int) -> tuple[datetime, datetime]:
    """Writes `count` readings of the fleet (and registers its devices); returns their first and last time."""
    upsert_devices(database_url, fleet_devices())
    last = START
    with psycopg.connect(database_url, autocommit=True) as conn:
        days = (count // (TRUCKS * 86400 // FIX_S)) + 2
        conn.execute("SELECT wastegate_ensure_telemetry_partitions(%s, %s)",
                     [START.date(), (START + timedelta(days=days)).date()])
        with conn.cursor() as cur, cur.copy(_COPY) as copy:
            copy.set_types(_TYPES)
            for r in fleet_history(count):
                copy.write_row((r.time, r.device_id, r.message_key, r.received_at, r.profile, r.lat, r.lon,
                                r.speed_kmh, r.heading_deg, r.fill_pct, r.distance_mm, r.temperature_c,
                                r.battery_pct, r.battery_v, r.tilted, r.weight_kg, r.rfid, r.event,
                                Jsonb(dict(r.extra), dumps=dump_json) if r.extra else None))
                last = r.time
        conn.execute("ANALYZE telemetry")
    return START, last


def _intervals() -> dict[str, float | None]:
    return {p.name: p.config.defaults.expected_interval_s for p in load_profiles(REPO / "device_profiles").profiles}


def _backtest_child(database_url: str, until: datetime, workers: int, answer: Any) -> None:
    plan = BacktestPlan(HistoryFilter(START, until), RuleSource(REPO / "rules"), workers=workers)
    report = run_plan(database_url, plan, _intervals())
    answer.put({"readings": report.stats.readings, "elapsed_s": round(report.stats.elapsed_s, 2),
                "readings_per_s": round(report.stats.rate),
                "incidents": len(report.runs["rules"]),
                "peak_rss_mib": round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 1)})


def backtest_in_process_of_its_own(database_url: str, until: datetime, workers: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    child = context.Process(target=_backtest_child, args=(database_url, until, workers, answer))
    child.start()
    result: dict[str, Any] = answer.get()
    child.join()
    return result


def rule_stage_alone(count: int) -> dict[str, Any]:
    """The same rules on the same readings held in memory: what the rules cost without reading history."""
    readings = list(fleet_history(count))
    run = Backtest("rules", load_rules(REPO / "rules"), DeviceDirectory(fleet_devices()), _intervals())
    started = time.perf_counter()
    stats = replay(readings, [run], START, readings[-1].time, timedelta(seconds=60))
    elapsed = time.perf_counter() - started
    return {"readings": stats.readings, "elapsed_s": round(elapsed, 2), "readings_per_s": round(count / elapsed),
            "incidents": len(run.incidents)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 k and 300 k readings instead of 1 M and 10 M")
    parser.add_argument("--name", default="latest")
    args = parser.parse_args()
    from gateway.embedded.postgres import Postgres
    from gateway.settings import Settings
    from gateway.store.migrate import apply_storage_policies, migrate

    small, large = (100_000, 300_000) if args.quick else (1_000_000, 10_000_000)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wastegate-bench-backtest-") as scratch:
        postgres = Postgres(Path(scratch)).start()
        try:
            url = postgres.url()
            migrate(url)
            apply_storage_policies(url, Settings(_env_file=None))
            started = time.perf_counter()
            _, last = store_history(url, large)
            stored_s = time.perf_counter() - started
            small_until = START + (last - START) * small / large
            figures: dict[str, Any] = {"stored": {"readings": large, "seconds": round(stored_s, 1)}}
            for size, until in ((small, small_until), (large, last + timedelta(seconds=1))):
                for workers in (1, 2):
                    label = f"{size:,} in {workers} process" + ("es" if workers > 1 else "")
                    figures[label] = backtest_in_process_of_its_own(url, until, workers)
                    print(f"backtest of {figures[label]['readings']:,} stored readings in {workers} process(es): "
                          f"{figures[label]['readings_per_s']:,} readings/s, {figures[label]['elapsed_s']} s, "
                          f"peak RSS {figures[label]['peak_rss_mib']} MiB")
        finally:
            postgres.stop("fast")
    alone = rule_stage_alone(min(small, 500_000))
    figures["rule_stage_alone"] = alone
    best = max(figures[f"{large:,} in {n}"]["readings_per_s"] for n in ("1 process", "2 processes"))
    figures["ratio_to_rule_stage"] = round(figures[f"{large:,} in 1 process"]["readings_per_s"]
                                           / alone["readings_per_s"], 2)
    figures["goal_readings_per_s"] = GOAL
    figures["goal_met"] = best >= GOAL
    print(f"the rules alone on {alone['readings']:,} readings in memory: {alone['readings_per_s']:,} readings/s; "
          f"backtest / rules alone: {figures['ratio_to_rule_stage']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"backtest-{args.name}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
