"""The hot path's shortcuts answer what the full evaluation answers: simple conditions without CEL, the
outside-mode geofence without copying its state, zone filters worked out once per attribute value, and
a batch's zone lookups through the zones' prepared geometries."""

from __future__ import annotations

import random
from typing import Any

import cel
import pytest
from shapely.geometry import Polygon, box

from gateway.rules.expressions import Condition
from gateway.rules.geofence import GeofenceRule, _device_fields
from gateway.rules.model import reading_context
from gateway.rules.zones import Zone, ZoneIndex
from tests.unit.rules.helpers import device, reading, rule

NAN, INF = float("nan"), float("inf")


def cel_answer(source: str, value: Any) -> bool | None:
    try:
        result = cel.compile(source).execute({"x": value})
    except (RuntimeError, ValueError, TypeError):
        return None
    return result if isinstance(result, bool) else None


@pytest.mark.parametrize("source", ["x >= 80.0", "x < 15.0", "x > -2.5", "x <= .5", "x == 1.5e2", "x != 0.0",
                                    "x == true", "x != false", " x>=1.0 "])
def test_a_simple_condition_answers_as_cel(source: str) -> None:
    condition = Condition(source, frozenset({"x"}))
    assert condition._simple is not None and condition._simple.name == "x"
    for value in (80.0, 79.9, -0.0, 0.0, NAN, INF, -INF, 150.0, 0.5, -2.5, 1e308, 5e-324, True, False, 80, 15, "a"):
        assert condition.evaluate({"x": value}) == cel_answer(source, value), (source, value)
    assert condition.evaluate({}) is None


@pytest.mark.parametrize("source", ["x >= 80", "x > true", "x < 2.0 && x > 1.0", "x == 'a'"])
def test_other_conditions_go_to_cel(source: str) -> None:
    assert Condition(source, frozenset({"x"}))._simple is None


def test_the_device_attributes_a_zone_filter_reads() -> None:
    assert _device_fields("zone.name == device.service_area") == ("service_area",)
    assert _device_fields("has(device.a) && zone.x == device . b") == ("a", "b")
    assert _device_fields("zone.device == 1") == ()
    for source in ('device["a"] == zone.name', 'zone.name == "device"', "device == zone",
                   "zone.tags.exists(device, device == 'x')"):
        assert _device_fields(source) is None, source


DISTRICTS = [Zone(f"d/{i}", "d", name, {"name": name}, box(2.0 + i * 0.01, 41.0, 2.01 + i * 0.01, 41.01))
             for i, name in enumerate(("North", "South", "East"))]
DEPOTS = [Zone("depots/1", "depots", "Depot", {}, box(2.012, 41.002, 2.014, 41.004))]


def random_track(seed: int, fixes: int = 400) -> list[Any]:
    """A truck wandering over the three districts and the depot, with stops and gaps."""
    rng = random.Random(seed)
    lon, lat, t, track = 2.015, 41.005, 0.0, []
    for _ in range(fixes):
        t += rng.choice((1, 1, 1, 5, 30, 90))
        lon = min(max(lon + rng.uniform(-0.002, 0.002), 1.995), 2.035)
        lat = min(max(lat + rng.uniform(-0.001, 0.001), 40.998), 41.012)
        speed = rng.choice((0.0, 0.5, 12.0, 30.0))
        track.append(reading(t, "T1", lon=lon, lat=lat, speed_kmh=speed, extra={"ignition": rng.random() < 0.8}))
    return track


def evaluate_all(rule_: GeofenceRule, track: list[Any], attributes: dict[str, Any]) -> list[Any]:
    dev = device("T1", kind="truck", **attributes)
    state: Any = None
    seen = []
    for r in track:
        outcome = rule_.evaluate(r, reading_context(r, dev), state, r.time)
        state = outcome.state
        seen.append(([(f.action, f.subject, f.time) for f in outcome.findings], state))
    return seen


@pytest.mark.parametrize("config", [
    {"zones": {"layers": ["d"], "where": "zone.name == device.service_area"}, "min_outside": "2m",
     "min_inside": "30s"},
    {"zones": {"layers": ["depots"]}, "min_outside": "1m",
     "condition": "speed_kmh < 2.0 && has(extra.ignition) && extra.ignition == true", "condition_for": "3m"},
    {"zones": {"layers": ["depots"]}, "condition": "speed_kmh < 2.0", "cooldown": "0s"},
])
def test_the_outside_mode_shortcut_changes_nothing(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    layers = {"d": DISTRICTS, "depots": DEPOTS}
    config = dict(config)
    cooldown = config.pop("cooldown", "0s")

    def build() -> GeofenceRule:
        built: GeofenceRule = rule(layers, kind="geofence", mode="outside",
                                   incident={"service_code": "x", "title": "t", "cooldown": cooldown}, **config)
        return built

    for seed in range(6):
        track = random_track(seed)
        fast = evaluate_all(build(), track, {"service_area": "South"})
        monkeypatch.setattr(GeofenceRule, "_outside_unchanged", lambda *args: False)
        full = evaluate_all(build(), track, {"service_area": "South"})
        monkeypatch.undo()
        assert [findings for findings, _ in fast] == [findings for findings, _ in full]
        assert [dict(state or {}) for _, state in fast] == [dict(state or {}) for _, state in full]
        assert any(findings for findings, _ in fast) or seed, "the track opens incidents"


def test_a_zone_filter_is_worked_out_once_per_attribute_value(monkeypatch: pytest.MonkeyPatch) -> None:
    r = rule({"d": DISTRICTS}, kind="geofence", mode="outside", min_outside="0s",
             zones={"layers": ["d"], "where": "zone.name == device.service_area"})
    calls: list[Any] = []
    original = GeofenceRule._filter_zones

    def counted(self: GeofenceRule, dev: Any) -> frozenset[str]:
        calls.append(dev)
        return original(self, dev)

    monkeypatch.setattr(GeofenceRule, "_filter_zones", counted)
    fix = reading(0, "T1", lon=2.015, lat=41.005)
    for truck in range(20):
        dev = device(f"T{truck}", kind="truck", service_area="South" if truck % 2 else "North")
        allowed = r._zones_for(reading_context(fix, dev))
        assert allowed == {"d/1" if truck % 2 else "d/0"}
    assert len(calls) == 2
    listed = device("T99", kind="truck", service_area=["North"])  # unhashable: per device, as before
    assert r._zones_for(reading_context(fix, listed)) == frozenset()


def test_a_batch_lookup_finds_what_a_point_lookup_finds() -> None:
    rng = random.Random(3)
    ring = [(2.0 + 0.01 * rng.random(), 41.0 + 0.01 * rng.random()) for _ in range(3)]
    zones = [Zone(f"z/{i}", "z", str(i), {}, box(2.0 + (i % 7) * 0.002, 41.0 + (i // 7) * 0.002,
                                                    2.003 + (i % 7) * 0.002, 41.003 + (i // 7) * 0.002))
             for i in range(40)] + [Zone("z/tri", "z", "tri", {}, Polygon(ring))]
    index = ZoneIndex(zones)
    points = [(round(2.0 + rng.random() * 0.016, 4), round(41.0 + rng.random() * 0.012, 4)) for _ in range(2000)]
    points += [(2.002, 41.001), (2.0, 41.0)]  # on an edge, on a corner: not inside
    singles = {point: [z.id for z in ZoneIndex(zones).containing(*point)] for point in points}
    index.prefetch(set(points))
    assert {point: [z.id for z in index.containing(*point)] for point in points} == singles
    assert singles[(2.002, 41.001)] == ["z/0"] and singles[(2.0, 41.0)] == []
