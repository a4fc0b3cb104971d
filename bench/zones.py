"""Generated zones for the benchmarks: squares on a grid over Barcelona for the rule-cost scenario, and the
end-to-end scenarios' layer of zones that the fleet's trucks drive through."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from shapely.geometry import Polygon, box

REPO = Path(__file__).resolve().parent.parent


def generated_zones(count: int) -> list[Polygon]:
    side = math.ceil(math.sqrt(count))
    step_lon, step_lat = 0.12 / side, 0.08 / side
    zones = []
    for i in range(count):
        x, y = i % side, i // side
        lon, lat = 2.08 + x * step_lon, 41.34 + y * step_lat
        zones.append(box(lon, lat, lon + step_lon * 0.6, lat + step_lat * 0.6))
    return zones


# The end-to-end scenarios' zone layer: 1,000 small zones (a restricted street, a collection point) over
# Barcelona's grid, each on the path of its own trucks, and a rule whose every visit opens an incident and
# whose every exit resolves it. Written with the shipped rules into a temporary rules directory.
VISIT_LAYER = "bench-visits"
VISIT_ZONES = 1000
VISIT_RADIUS_M = 40.0
_METRES_PER_DEGREE = 111_320.0
_VISIT_RULE = """\
# Written by the benchmark (bench/zones.py): a zone visit opens an incident, leaving resolves it.
rules:
  - id: bench-zone-visit
    description: A truck entering one of the benchmark's zones (a restricted street, say).
    kind: geofence
    mode: enter
    applies_to: {kinds: [truck]}
    zones: {layers: [LAYER]}
    min_inside: 3s
    min_outside: 5s
    incident:
      service_code: vehicle_conduct
      severity: info
      title: "Truck {device.name} entered {zone.name}"
""".replace("LAYER", VISIT_LAYER)


def visit_zone_centres(count: int = VISIT_ZONES) -> list[tuple[float, float]]:
    """(lon, lat) of each zone: a grid over the city's streets (lon 2.10–2.21, lat 41.365–41.43)."""
    columns = max(1, math.ceil(math.sqrt(count * 1.6)))
    rows = math.ceil(count / columns)
    step_lon, step_lat = 0.11 / columns, 0.065 / max(rows, 1)
    return [(round(2.10 + (i % columns + 0.5) * step_lon, 6), round(41.365 + (i // columns + 0.5) * step_lat, 6))
            for i in range(count)]


def visit_zone_features(count: int = VISIT_ZONES) -> list[dict[str, Any]]:
    """GeoJSON features: a 16-sided polygon of radius `VISIT_RADIUS_M` around each centre."""
    features = []
    for i, (lon, lat) in enumerate(visit_zone_centres(count)):
        metres_lon = _METRES_PER_DEGREE * math.cos(math.radians(lat))
        ring = [[round(lon + VISIT_RADIUS_M * math.sin(a) / metres_lon, 7),
                 round(lat + VISIT_RADIUS_M * math.cos(a) / _METRES_PER_DEGREE, 7)]
                for a in (2 * math.pi * k / 16 for k in range(16))]
        features.append({"type": "Feature", "id": f"v{i:04d}",
                         "properties": {"name": f"Restricted street {i:04d}", "kind": "restricted"},
                         "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}})
    return features


def rules_directory(target: Path, zone_count: int = VISIT_ZONES) -> Path:
    """The shipped rules/ (rules, zones, data) plus the visit layer and its rule, in `target`."""
    shutil.copytree(REPO / "rules", target, ignore=shutil.ignore_patterns("tests"))
    (target / "zones" / f"{VISIT_LAYER}.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": visit_zone_features(zone_count)}))
    (target / f"{VISIT_LAYER}.yaml").write_text(_VISIT_RULE)
    return target
