"""Generated zones for the benchmarks: squares on a grid over Barcelona, none of them on the traffic's path
more than a few at a time."""

from __future__ import annotations

import math

from shapely.geometry import Polygon, box


def generated_zones(count: int) -> list[Polygon]:
    side = math.ceil(math.sqrt(count))
    step_lon, step_lat = 0.12 / side, 0.08 / side
    zones = []
    for i in range(count):
        x, y = i % side, i // side
        lon, lat = 2.08 + x * step_lon, 41.34 + y * step_lat
        zones.append(box(lon, lat, lon + step_lon * 0.6, lat + step_lat * 0.6))
    return zones
