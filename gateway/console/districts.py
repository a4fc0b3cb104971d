"""The city's districts, for the queue's filter and the statistics: the shipped zone layer
`rules/zones/districtes.geojson`, read again when the file changes."""

from __future__ import annotations

from gateway.api.context import ApiContext
from gateway.rules.zones import Zone, ZoneError, load_zones

DISTRICT_LAYER = "districtes"
_loaded: dict[str, tuple[float, list[Zone]]] = {}


def districts(api: ApiContext) -> list[Zone]:
    path = api.settings.rules_dir / "zones" / f"{DISTRICT_LAYER}.geojson"
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return []
    cached = _loaded.get(str(path))
    if cached is None or cached[0] != stamp:
        try:
            zones = load_zones(path.parent).get(DISTRICT_LAYER, [])
        except ZoneError:
            zones = []
        cached = _loaded[str(path)] = (stamp, zones)
    return cached[1]


def outlines(api: ApiContext) -> dict[str, list[str]]:
    """Each district by name as PostgreSQL polygons (the outer ring of each of its parts; lon as x)."""
    found: dict[str, list[str]] = {}
    for zone in districts(api):
        parts = getattr(zone.geometry, "geoms", [zone.geometry])
        found.setdefault(zone.name, []).extend(
            "(" + ",".join(f"({x},{y})" for x, y in part.exterior.coords) + ")" for part in parts)
    return found
