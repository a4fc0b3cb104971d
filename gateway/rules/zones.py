"""Zones: the features of the GeoJSON files in `rules/zones/` (RFC 7946: WGS84, [lon, lat]).

A zone's id is `<file stem>/<feature id>` (the feature's `id`, else its `id` property, else its index);
its properties are usable in conditions as `zone.<property>`. Point lookups go through an STRtree, so a
rule over thousands of zones costs about what a rule over a few costs.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry


class ZoneError(ValueError):
    pass


@dataclass(frozen=True, eq=False)
class Zone:
    id: str
    layer: str
    name: str
    properties: Mapping[str, Any]
    geometry: BaseGeometry

    @cached_property
    def _context(self) -> dict[str, Any]:
        return {**self.properties, "id": self.id, "layer": self.layer, "name": self.name}

    def context(self) -> dict[str, Any]:
        """What conditions and templates see as `zone` (one dict per zone, read-only by convention)."""
        return self._context


def load_zone_file(path: Path) -> list[Zone]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZoneError(f"{path}: {exc}") from exc
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, list):
        raise ZoneError(f"{path}: not a GeoJSON FeatureCollection")
    zones = []
    for index, feature in enumerate(features):
        try:
            geometry = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ZoneError(f"{path}: feature {index}: bad geometry ({exc})") from exc
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise ZoneError(f"{path}: feature {index}: {geometry.geom_type} is not an area")
        if not geometry.is_valid:
            geometry = shapely.make_valid(geometry)
        properties = dict(feature.get("properties") or {})
        local_id = feature.get("id", properties.get("id", index))
        name = str(properties.get("name") or properties.get("NOM") or local_id)
        zones.append(Zone(f"{path.stem}/{local_id}", path.stem, name, properties, geometry))
    return zones


def load_zones(directory: Path) -> dict[str, list[Zone]]:
    """Layers by file stem."""
    if not directory.is_dir():
        return {}
    return {path.stem: load_zone_file(path) for path in sorted(directory.glob("*.geojson"))}


class ZoneIndex:
    """Which of a fixed set of zones contain a point.

    `prefetch` answers for a whole batch of points in one vectorized STRtree query (about a tenth of the
    cost of asking point by point); `containing` then reads those answers and asks the tree only for a
    point the batch did not have.
    """

    def __init__(self, zones: Iterable[Zone]) -> None:
        self.zones = list(zones)
        geometries = [zone.geometry for zone in self.zones]
        for geometry in geometries:
            shapely.prepare(geometry)
        self._tree = shapely.STRtree(geometries)
        self._geometries = np.array(geometries, dtype=object)
        self.by_id = {zone.id: zone for zone in self.zones}
        self._prefetched: dict[tuple[float, float], list[Zone]] = {}

    def prefetch(self, points: Collection[tuple[float, float]]) -> None:
        """Looks up every (lon, lat) of a batch at once; replaces the previous batch's answers."""
        prefetched: dict[tuple[float, float], list[Zone]] = {point: [] for point in points}
        if prefetched:
            ordered = list(prefetched)
            geometries = shapely.points(np.asarray(ordered, dtype=float))
            # The tree gives the zones whose bounding box holds a point, then each zone's prepared
            # geometry says whether it contains the point (the same as the point `within` it): the
            # tree's own `within` does not use the prepared zones, and costs 14 times as much on the
            # city's districts (hundreds of vertices each).
            point_index, zone_index = self._tree.query(geometries)
            inside = shapely.contains(self._geometries[zone_index], geometries[point_index])
            point_index, zone_index = point_index[inside], zone_index[inside]
            # Zones in index order per point, as `containing` gives them.
            for p, z in sorted(zip(point_index.tolist(), zone_index.tolist(), strict=True)):
                prefetched[ordered[p]].append(self.zones[z])
        self._prefetched = prefetched

    def containing(self, lon: float, lat: float) -> list[Zone]:
        hits = self._prefetched.get((lon, lat))
        if hits is not None:
            return hits
        found = self._tree.query(shapely.Point(lon, lat), predicate="within")
        return [self.zones[i] for i in np.sort(found)]
