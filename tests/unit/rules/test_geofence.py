from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from shapely.geometry import box

from gateway.events import Reading
from gateway.rules.zones import Zone
from tests.unit.rules.helpers import actions, device, reading, rule, run

# Two 0.01°-wide squares side by side: A = [2.00, 2.01] x [41.00, 41.01], B = [2.01, 2.02] x [41.00, 41.01].
ZONES = {"areas": [
    Zone("areas/A", "areas", "A", {"speed_limit_kmh": 30, "district": "A"}, box(2.00, 41.00, 2.01, 41.01)),
    Zone("areas/B", "areas", "B", {"speed_limit_kmh": 50, "district": "B"}, box(2.01, 41.00, 2.02, 41.01)),
]}
IN_A, IN_B, OUT = (2.005, 41.005), (2.015, 41.005), (2.03, 41.005)


def at(seconds: float, where: tuple[float, float], **fields: Any) -> Reading:
    return reading(seconds, lon=where[0], lat=where[1], **fields)


def geofence(**config: Any) -> Any:
    return rule(ZONES, kind="geofence", zones={"layers": ["areas"]}, **config)


def test_enter_needs_min_inside_and_a_previous_outside() -> None:
    r = geofence(mode="enter", min_inside="30s", min_outside="30s")
    track = [at(0, OUT), at(40, OUT), at(50, IN_A), at(60, OUT), at(70, IN_A), at(90, IN_A), at(110, IN_A)]
    findings, _ = run(r, track, device(kind="truck"))
    # inside since 08:01:10 (the fix at 08:00:50 was a blip), confirmed 30 s later
    assert actions(findings) == [("open", "08:01:50")]
    assert findings[0].subject == "D1:areas/A" and findings[0].data["zone"] == "areas/A"


def test_first_seen_inside_is_not_an_entry() -> None:
    findings, _ = run(geofence(mode="enter"), [at(0, IN_A), at(10, IN_A)])
    assert findings == []


def test_exit_and_its_resolution_on_return() -> None:
    r = geofence(mode="exit", min_outside="20s")
    findings, _ = run(r, [at(0, IN_A), at(10, OUT), at(40, OUT), at(60, IN_A)])
    assert actions(findings) == [("open", "08:00:40"), ("resolve", "08:01:00")]


def test_jitter_at_the_boundary_does_not_flap() -> None:
    # a truck parked on the edge of A: fixes alternate in and out every 5 s for ten minutes
    jitter = [at(i * 5, IN_A if i % 2 else OUT) for i in range(120)]
    damped = geofence(mode="exit", min_inside="30s", min_outside="30s")
    assert run(damped, [at(-60, IN_A), *jitter])[0] == []
    naive = geofence(mode="exit")
    flaps, _ = run(naive, [at(-60, IN_A), *jitter])
    assert len(flaps) > 100


def test_inside_with_a_condition_on_zone_properties() -> None:
    r = geofence(mode="inside", condition="speed_kmh > zone.speed_limit_kmh", condition_for="10s")
    track = [at(0, IN_A, speed_kmh=45), at(5, IN_A, speed_kmh=45), at(15, IN_A, speed_kmh=45),
             at(20, IN_A, speed_kmh=20), at(30, IN_B, speed_kmh=45), at(45, IN_B, speed_kmh=45)]
    findings, _ = run(r, track, device(kind="truck"))
    assert actions(findings) == [("open", "08:00:15"), ("resolve", "08:00:20")]
    assert "speed_kmh" in findings[0].data  # B allows 50 km/h: no incident there


def test_outside_every_allowed_zone_with_a_per_device_zone_filter() -> None:
    r = rule(ZONES, kind="geofence", mode="outside", min_outside="60s", min_inside="10s",
             zones={"layers": ["areas"], "where": "zone.district == device.service_area"})
    truck = device(kind="truck", service_area="A")
    track = [at(0, IN_A), at(30, IN_B), at(60, IN_B), at(100, IN_B), at(120, IN_A), at(130, IN_A)]
    findings, _ = run(r, track, truck)
    assert actions(findings) == [("open", "08:01:40"), ("resolve", "08:02:10")]
    assert findings[0].subject == "D1"


def test_dwell() -> None:
    r = geofence(mode="dwell", dwell="5m")
    track = [at(0, OUT), at(10, IN_B), at(200, IN_B), at(320, IN_B), at(400, OUT)]
    findings, _ = run(r, track)
    assert actions(findings) == [("open", "08:05:20"), ("resolve", "08:06:40")]


def test_inaccurate_or_missing_positions_are_ignored() -> None:
    r = geofence(mode="exit")
    track = [at(0, IN_A), at(10, OUT, extra={"position_inaccurate": True}), reading(20)]
    findings, state = run(r, track)
    assert findings == [] and state is not None and state["z"]["areas/A"]["in"] is True


def test_state_only_keeps_zones_near_the_device() -> None:
    r = geofence(mode="enter")
    _, state = run(r, [at(0, IN_A), at(10, OUT), at(20, IN_B), at(30, OUT)])
    assert state is not None and set(state["z"]) == set()


def test_mode_parameters_are_checked() -> None:
    with pytest.raises(ValidationError, match="dwell"):
        geofence(mode="dwell")
    with pytest.raises(ValueError, match="zone layer"):
        rule(ZONES, kind="geofence", mode="enter", zones={"layers": ["nowhere"]})


def test_a_batch_lookup_decides_as_the_point_by_point_one() -> None:
    tracks = [
        [at(0, OUT), at(40, OUT), at(50, IN_A), at(60, OUT), at(70, IN_A), at(90, IN_A), at(110, IN_A)],
        [at(i * 5, IN_A if i % 3 else IN_B, speed_kmh=20 + i) for i in range(40)],
        [at(0, IN_A, speed_kmh=45), at(5, IN_A, speed_kmh=45), at(15, IN_B, speed_kmh=45), at(30, OUT)],
    ]
    for mode in ("enter", "exit", "inside", "outside", "dwell"):
        extra = {"dwell": "20s"} if mode == "dwell" else {}
        for track in tracks:
            one_by_one = run(geofence(mode=mode, **extra), track, device(kind="truck"))
            batched = run(geofence(mode=mode, **extra), track, device(kind="truck"), batched=True)
            assert batched == one_by_one


def test_batch_lookup_matches_the_tree_for_random_points() -> None:
    import random

    from gateway.rules.zones import ZoneIndex
    index = ZoneIndex(ZONES["areas"])
    rng = random.Random(7)
    points = [(rng.uniform(1.995, 2.025), rng.uniform(40.995, 41.015)) for _ in range(500)]
    expected = [[z.id for z in index.containing(lon, lat)] for lon, lat in points]
    index.prefetch(points)
    assert [[z.id for z in index.containing(lon, lat)] for lon, lat in points] == expected
    assert sum(1 for ids in expected if ids) > 100  # the sample does land in the zones
    assert [z.id for z in index.containing(2.005, 41.005)] == ["areas/A"]  # not in the batch: asked directly



# A condition's clock runs while the device is on the side where the rule watches it (inside: in the zone;
# outside: out of every zone); crossing back restarts it. Both tracks hold the condition 5 or 50 s, cross,
# come back, and must then hold it the whole `condition_for` again.
@pytest.mark.parametrize(("mode", "condition", "hold", "track", "opened"), [
    ("inside", "speed_kmh > zone.speed_limit_kmh", "10s",
     [(0, IN_A), (5, IN_A), (6, OUT), (100, IN_A), (105, IN_A), (110, IN_A)], "08:01:50"),
    ("outside", "speed_kmh < 2.0", "60s",
     [(0, OUT), (50, OUT), (55, IN_A), (100, OUT), (130, OUT), (160, OUT)], "08:02:40"),
])
def test_a_condition_held_before_crossing_does_not_count_after_crossing_back(
        mode: str, condition: str, hold: str, track: list[tuple[float, tuple[float, float]]], opened: str) -> None:
    speed = 45 if mode == "inside" else 0
    r = geofence(mode=mode, condition=condition, condition_for=hold)
    findings, _ = run(r, [at(t, where, speed_kmh=speed) for t, where in track], device(kind="truck"))
    assert actions(findings) == [("open", opened)]
