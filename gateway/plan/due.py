"""What a day's plan is made of, from the registry, the zones and the forecasts committed: the containers
due (on their `collection_days`, or forecast by the `fill_forecast` rule to pass the full level before the
shift ends), the trucks with a `capacity_l` (and `capacity_kg`) attribute, their depot (a `depot`
attribute naming a feature of zones/depots.geojson, else the first) and the transfer station
(zones/transfer-stations.geojson)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.devices import Device
from gateway.plan.routes import Due, Place, Truck
from gateway.rules.forecast import DAYS
from gateway.rules.zones import load_zone_file

SHIFT = (time(6, 0), time(14, 0))
FORECAST_KEPT = timedelta(days=2)  # an older forecast (a silent sensor) says nothing of the day
DEFAULT_CONTAINER_L = 3200


class PlanRefused(ValueError):
    """Nothing to plan with: no truck with a capacity, no depot or transfer station in the zones."""


def places(zones_dir: Path, layer: str) -> list[Place]:
    path = zones_dir / f"{layer}.geojson"
    if not path.exists():
        raise PlanRefused(f"{path} is missing: the plan needs a {layer.rstrip('s').replace('-', ' ')}")
    found = []
    for zone in load_zone_file(path):
        point = zone.geometry.representative_point() if zone.geometry.geom_type != "Point" else zone.geometry
        found.append(Place(zone.name, float(point.y), float(point.x)))
    if not found:
        raise PlanRefused(f"{path} has no feature")
    return found


def trucks_of(devices: Iterable[Device], depots: list[Place]) -> list[Truck]:
    trucks = []
    for device in devices:
        a = device.attributes
        if device.kind != "truck" or not isinstance(a.get("capacity_l"), int | float) or a["capacity_l"] <= 0:
            continue
        depot = next((p for p in depots if p.name == a.get("depot")), depots[0])
        trucks.append(Truck(device.device_id, device.name or device.device_id, int(a["capacity_l"]),
                            int(a.get("capacity_kg") or 0), depot))
    if not trucks:
        raise PlanRefused("no truck has a capacity: give trucks a capacity_l attribute (litres of container "
                          "contents it takes), and capacity_kg if weight limits it")
    return sorted(trucks, key=lambda t: t.id)


def _level_at(forecast: list[Any], at: datetime) -> float:
    made, level, rate = forecast[0], forecast[1], forecast[2]
    return max(0.0, min(100.0, float(level) + float(rate) * (at.timestamp() - float(made)) / 3600))


def due_on(day: date, devices: Iterable[Device], forecasts: Mapping[str, list[Any]], tz: ZoneInfo,
           threshold: float = 80.0) -> list[Due]:
    """Containers due on `day`: scheduled that weekday, or forecast at or above `threshold` by the end of
    the shift. How much each holds is its forecast level at the start of the shift (full when unknown)."""
    start, end = (datetime.combine(day, t, tz) for t in SHIFT)
    found = []
    for device in devices:
        if device.kind != "container" or device.lat is None or device.lon is None:
            continue
        a = device.attributes
        forecast = forecasts.get(device.device_id)
        scheduled = DAYS[day.weekday()] in (a.get("collection_days") or ())
        forecast_full = forecast is not None and _level_at(forecast, end) >= threshold
        if not (scheduled or forecast_full):
            continue
        level = _level_at(forecast, start) if forecast is not None else None
        capacity = int(a.get("capacity_l") or DEFAULT_CONTAINER_L)
        litres = round(capacity * (level if level is not None else 100.0) / 100)
        kg = round(litres * float(a.get("density_kg_l") or 0))
        found.append(Due(device.device_id, device.name or device.device_id, device.lat, device.lon, max(litres, 1),
                         kg, "scheduled" if scheduled else "forecast", level))
    return sorted(found, key=lambda d: d.id)


def forecasts_of(states: Iterable[tuple[str, str, dict[str, Any]]], rule_ids: set[str],
                 made_before: datetime | None = None) -> dict[str, list[Any]]:
    """The latest forecast of each container made in the two days before `made_before`, from the
    fill_forecast rules' committed states."""
    found: dict[str, list[Any]] = {}
    for rule_id, subject, stored in states:
        state = stored.get("s") if isinstance(stored, dict) else None
        forecast = state.get("f") if isinstance(state, dict) else None
        if rule_id in rule_ids and isinstance(forecast, list) and len(forecast) >= 3 \
                and (made_before is None or made_before.timestamp() - FORECAST_KEPT.total_seconds()
                     <= forecast[0] <= made_before.timestamp()) \
                and (subject not in found or found[subject][0] < forecast[0]):
            found[subject] = forecast
    return found


def shift_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, SHIFT[0], tz)

