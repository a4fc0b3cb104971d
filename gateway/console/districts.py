"""A municipality's districts, for the queue's filter and the statistics: the zone layer
`<rules>/zones/districtes.geojson` of its rules, read again when the file changes."""

from __future__ import annotations

from pathlib import Path

from gateway.rules.zones import Zone, ZoneError, load_zones

DISTRICT_LAYER = "districtes"
_loaded: dict[str, tuple[float, list[Zone]]] = {}


def districts(rules_dir: Path) -> list[Zone]:
    path = rules_dir / "zones" / f"{DISTRICT_LAYER}.geojson"
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


def outlines(rules_dir: Path) -> dict[str, list[str]]:
    """Each district by name as PostgreSQL polygons (the outer ring of each of its parts; lon as x)."""
    found: dict[str, list[str]] = {}
    for zone in districts(rules_dir):
        parts = getattr(zone.geometry, "geoms", [zone.geometry])
        found.setdefault(zone.name, []).extend(
            "(" + ",".join(f"({x},{y})" for x, y in part.exterior.coords) + ")" for part in parts)
    return found
