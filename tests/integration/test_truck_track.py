"""Acceptance: a scripted truck track with GPS jitter through Barcelona's real district polygons and a
school zone produces exactly the expected incidents, through Mosquitto and PostgreSQL; the same rules
without dwell times and hysteresis would have flapped."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import shapely

from gateway.catalogue import load_service_codes
from gateway.devices import Device, DeviceDirectory
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet, load_rules
from gateway.rules.zones import load_zone_file, load_zones
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from tests.support import REPO, publish, running_gateway, sql, wait_until

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DISTRICTS = {zone.name: zone.geometry for zone in load_zone_file(REPO / "rules/zones/districtes.geojson")}
SCHOOL = (2.1601, 41.3921)  # rules/zones/school-zones.geojson: escola-diagonal, 20 km/h
TRUCK = Device("T7", "truck", "truck", "Truck 7", attributes=MappingProxyType({"service_area": "Eixample"}))


def _towards(origin: tuple[float, float], target: tuple[float, float], metres: float) -> tuple[float, float]:
    dx = (target[0] - origin[0]) * math.cos(math.radians(origin[1]))
    dy = target[1] - origin[1]
    norm = math.hypot(dx, dy)
    step = metres / 111_320
    return (origin[0] + step * dx / norm / math.cos(math.radians(origin[1])), origin[1] + step * dy / norm)


def track() -> list[tuple[float, float, float, float]]:
    """(seconds, lon, lat, speed_kmh), one fix every 5 s."""
    border = DISTRICTS["Eixample"].boundary.intersection(DISTRICTS["Gràcia"].boundary)
    on_border = border.interpolate(0.5, normalized=True)
    gracia = DISTRICTS["Gràcia"].representative_point()
    p = (on_border.x, on_border.y)
    towards_gracia = (gracia.x, gracia.y)
    away = (2 * p[0] - gracia.x, 2 * p[1] - gracia.y)
    fixes: list[tuple[float, float, float, float]] = []
    t = 0.0

    def add(where: tuple[float, float], speed: float, seconds: float) -> None:
        nonlocal t
        for _ in range(int(seconds // 5)):
            fixes.append((t, where[0], where[1], speed))
            t += 5

    add((SCHOOL[0] - 0.004, SCHOOL[1]), 30, 30)  # Eixample, outside the school zone
    add(SCHOOL, 40, 30)  # through the school zone at twice its limit
    add((SCHOOL[0] + 0.004, SCHOOL[1]), 30, 60)  # out of it again
    for i in range(18):  # 90 s parked on the Eixample/Gràcia border: the fixes jump 12 m either side
        side = _towards(p, towards_gracia, 12) if i % 2 else _towards(p, away, 12)
        add(side, 0, 5)
    add(_towards(p, towards_gracia, 250), 15, 240)  # four minutes well inside Gràcia
    add(_towards(p, away, 250), 15, 120)  # back in Eixample
    return fixes


def test_the_track_is_where_it_claims() -> None:
    fixes = track()
    jitter = fixes[24:42]
    sides = {DISTRICTS["Gràcia"].contains(shapely.Point(lon, lat)) for _, lon, lat, _ in jitter}
    assert sides == {True, False}
    assert all(DISTRICTS["Gràcia"].contains(shapely.Point(lon, lat)) for _, lon, lat, _ in fixes[42:90])


def _messages() -> list[tuple[str, str]]:
    return [("trucks/T7/telemetry", json.dumps({
        "ts": (START + timedelta(seconds=t)).isoformat(), "lat": lat, "lon": lon, "speed_kmh": speed}))
        for t, lon, lat, speed in track()]


def test_expected_incidents_and_no_flapping(settings: Settings) -> None:
    url = settings.database_url
    upsert_devices(url, [TRUCK])
    with running_gateway(settings):
        publish(settings.mqtt_url, _messages())
        wait_until(lambda: sql(url, "SELECT count(*) FROM incidents WHERE status = 'resolved'")[0][0] == 2,
                   timeout_s=30)
    rows = sql(url, "SELECT rule_id, status, occurrences, first_seen_at FROM incidents ORDER BY first_seen_at")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("truck-overspeed-school-zone", "resolved", 1), ("truck-outside-service-area", "resolved", 1)]
    # overspeed confirmed after 5 s inside and 5 s of speeding; outside after 2 min in Gràcia, counted from
    # the last jitter fix (t=205 s, on the Gràcia side), not from the first one 80 s earlier
    assert rows[0][3] == START + timedelta(seconds=40)
    assert rows[1][3] == START + timedelta(seconds=205 + 120)


def _naive(rules: RuleSet) -> RuleSet:
    """The same rules without minimum durations: what a plain geofence would do."""
    plain = []
    for rule in rules.rules:
        if rule.kind == "geofence":
            config = rule.config.model_copy(update={"min_inside": timedelta(0), "min_outside": timedelta(0),
                                                    "condition_for": timedelta(0)})
            plain.append(config.build(load_zones(REPO / "rules/zones")))
    return RuleSet(tuple(plain), ())


def test_without_dwell_times_the_same_track_flaps() -> None:
    from gateway.events import Reading

    rules = load_rules(REPO / "rules", load_service_codes(REPO / "services.yaml"))
    readings = [Reading("T7", START + timedelta(seconds=t), START + timedelta(seconds=t), b"k", "truck",
                        lat=lat, lon=lon, speed_kmh=speed) for t, lon, lat, speed in track()]

    def opened(rule_set: RuleSet) -> int:
        engine = RuleEngine(rule_set, DeviceDirectory([TRUCK]), {})
        return sum(f.action == "open" for f in engine.evaluate(readings, START).findings)

    assert opened(rules) == 2
    assert opened(_naive(rules)) >= 10
