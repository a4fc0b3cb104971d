"""Planned routes against the fixed rounds, on the month simulator's 150 containers in l'Eixample.

The fixed rounds are what the simulator's trucks drive today: each container on a schedule (Mon/Thu,
Tue/Fri or Wed/Sat), the day's containers dealt to the trucks in turn, each truck driving to the nearest
container next, from its depot to the transfer station. For each day of two weeks:

- `same_stops`: the same containers, routed by `wastegate plan`'s solver (VROOM, within each truck's
  capacity): what planning saves (fewer trucks out, each in a better order); and the solver's loads
  driven in nearest-neighbour order, to tell the order's share from the trucks';
- `plan`: what `wastegate plan` serves that day (the scheduled containers and those the forecast says pass
  80 % before the shift ends), its stops and distance.

Distances are straight-line (haversine), as the plan uses without a routing service.
`python -m bench.routes` prints the figures and writes bench/results/routes.json; `wastegate bench`
includes them.
"""

from __future__ import annotations

import json
import statistics
import time as timer
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from gateway.devices import Device
from gateway.plan.due import due_on, places
from gateway.plan.routes import Place, Truck, nearest_neighbour_m, plan_routes
from gateway.rules.loader import load_rules
from gateway.rules.model import ReadingContext
from simulators.month import SCHEDULES, Month

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MADRID = ZoneInfo("Europe/Madrid")
START = datetime(2026, 3, 2, tzinfo=MADRID).astimezone(UTC)  # a Monday
TRUCKS = 3
TRUCK_LITRES = 60_000  # a 20 m³ compactor body, 3:1, in litres of loose contents
CONTAINER_LITRES = 2400


def _forecasts_each_morning(month: Month, containers: dict[str, Device],
                            days: list[date]) -> dict[date, dict[str, Any]]:
    """The fill_forecast rule's latest forecast of each container at 06:00 of each day."""
    rule = load_rules(REPO / "rules").by_id["container-will-overflow"]
    mornings = [datetime.combine(day, datetime.min.time(), MADRID) + timedelta(hours=6) for day in days]
    found: dict[date, dict[str, Any]] = {day: {} for day in days}
    states: dict[str, Any] = {}
    index = 0
    for reading in month.history():
        while index < len(mornings) and reading.time >= mornings[index]:
            found[days[index]] = {d: s.get("f") for d, s in states.items() if s and s.get("f")}
            index += 1
        if reading.fill_pct is None:
            continue
        outcome = rule.evaluate(reading, ReadingContext(reading, containers[reading.device_id]),
                                states.get(reading.device_id), reading.time)
        states[reading.device_id] = outcome.state
    for day in days[index:]:
        found[day] = {d: s.get("f") for d, s in states.items() if s and s.get("f")}
    return found


def run(days: int = 14, containers: int = 150, name: str = "routes", write: bool = True) -> dict[str, Any]:
    started = timer.perf_counter()
    month = Month(START, days=days + 1, containers=containers, trucks=0, households=0)
    devices = {d.device_id: Device(d.device_id, d.profile, d.kind, d.name, d.lat, d.lon, MappingProxyType(
        {**d.attributes, "capacity_l": CONTAINER_LITRES, "collection_days": list(SCHEDULES[i % 3])}))
        for i, d in enumerate(month.devices()) if d.kind == "container"}
    zones = REPO / "rules" / "zones"
    depot: Place = next(p for p in places(zones, "depots") if p.name == "Depot Poblenou")
    transfer = places(zones, "transfer-stations")[0]
    trucks = [Truck(f"T{i}", f"Truck {i}", TRUCK_LITRES, 0, depot) for i in range(1, TRUCKS + 1)]
    calendar = [START.astimezone(MADRID).date() + timedelta(days=d) for d in range(1, days + 1)]
    forecasts = _forecasts_each_morning(month, devices, calendar)
    per_day: list[dict[str, Any]] = []
    for day in calendar:
        due = due_on(day, devices.values(), forecasts[day], MADRID)
        scheduled = [d for d in due if d.why == "scheduled"]
        if not scheduled:
            continue  # Sunday: no round
        fixed_m = 0.0
        over_capacity = 0
        for index in range(TRUCKS):
            share = scheduled[index::TRUCKS]
            fixed_m += nearest_neighbour_m(depot, share, transfer)
            over_capacity += sum(s.litres for s in share) > TRUCK_LITRES
        same = plan_routes(day.isoformat(), scheduled, trucks, depot, transfer)
        # The solver's loads driven in nearest-neighbour order: what the order alone is worth.
        same_nn_m = sum(nearest_neighbour_m(r.start, r.stops, r.end) for r in same.routes)
        planned = plan_routes(day.isoformat(), due, trucks, depot, transfer)
        per_day.append({"day": day.isoformat(), "scheduled": len(scheduled), "forecast_due": len(due) - len(scheduled),
                        "fixed_km": round(fixed_m / 1000, 2), "fixed_rounds_over_capacity": over_capacity,
                        "same_stops_km": round(same.distance_m / 1000, 2), "same_stops_routes": len(same.routes),
                        "same_loads_nearest_neighbour_km": round(same_nn_m / 1000, 2),
                        "same_stops_not_served": len(same.not_served),
                        "plan_km": round(planned.distance_m / 1000, 2), "plan_not_served": len(planned.not_served),
                        "plan_routes": len(planned.routes), "fixed_trucks": TRUCKS})
    fixed = sum(d["fixed_km"] for d in per_day)
    same_km = sum(d["same_stops_km"] for d in per_day)
    figures = {
        "days": len(per_day), "containers": containers, "trucks": TRUCKS, "truck_litres": TRUCK_LITRES,
        "fixed_rounds_km": round(fixed, 1), "same_stops_planned_km": round(same_km, 1),
        "routing_saves": round(1 - same_km / fixed, 3) if fixed else None,
        "same_loads_nearest_neighbour_km": round(sum(d["same_loads_nearest_neighbour_km"] for d in per_day), 1),
        "plan_km": round(sum(d["plan_km"] for d in per_day), 1),
        "plan_stops_per_day": round(statistics.fmean(d["scheduled"] + d["forecast_due"] for d in per_day), 1),
        "fixed_stops_per_day": round(statistics.fmean(d["scheduled"] for d in per_day), 1),
        "fixed_trucks_per_day": TRUCKS,
        "planned_trucks_per_day": round(statistics.fmean(d["same_stops_routes"] for d in per_day), 2),
        "not_served": sum(d["plan_not_served"] + d["same_stops_not_served"] for d in per_day),
        "per_day": per_day, "seconds": round(timer.perf_counter() - started, 1)}
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    result = run()
    print(json.dumps({k: v for k, v in result.items() if k != "per_day"}, indent=2))
