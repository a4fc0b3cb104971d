"""Rule state is typed and versioned: what an earlier release stored still loads (upgraded), what cannot
be read starts afresh instead of breaking the rule, and a geofence incident keeps the crossing's own time."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.devices import DeviceDirectory
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet
from tests.unit.rules.helpers import T0, device, reading, rule, run
from tests.unit.rules.test_geofence import IN_A, OUT, at, geofence

THRESHOLD = {"kind": "threshold", "condition": "fill_pct >= 80.0", "for": "10m", "applies_to": {"kinds": ["container"]}}


def engine_with(r: object, stored: list[tuple[str, str, dict[str, object]]]) -> RuleEngine:
    directory = DeviceDirectory([device("D1"), device("T1", kind="truck")])
    return RuleEngine(RuleSet((r,), ()), directory, {"p": 600.0}, stored)  # type: ignore[arg-type]


def test_a_threshold_state_stored_before_versions_existed_still_counts_its_duration() -> None:
    pending = rule(**THRESHOLD)
    # As the release before this one wrote it: no "v", the state under "s", the device time under "t".
    previous = {"s": {"since": reading(0).time.timestamp()}, "t": reading(540).time.timestamp()}
    restarted = engine_with(pending, [("r1", "D1", previous)])
    after = restarted.evaluate([reading(600, fill_pct=90)], T0)  # the tenth minute: open
    assert [f.action for f in after.findings] == ["open"]
    assert after.states[("r1", "D1")]["v"] == pending.state_version  # type: ignore[index]


def test_a_geofence_state_of_version_1_gains_the_crossing_time_on_load() -> None:
    r = geofence(mode="dwell", dwell="1m")
    entered = reading(0).time.timestamp()
    previous = {"s": {"z": {"areas/A": {"in": True, "entered": entered}}, "on": {}, "cond": {}, "resolved": {},
                      "seen": True}, "t": entered}
    e = engine_with(r, [("r1", "T1", previous)])
    loaded = e.states[("r1", "T1")]
    assert loaded is not None and loaded["z"]["areas/A"]["crossed"] == entered
    found = e.evaluate([at(90, IN_A, device_id="T1")], T0).findings
    assert [f.action for f in found] == ["open"]
    assert found[0].data["crossed_at"] == datetime.fromtimestamp(entered, UTC).isoformat()


def test_a_state_that_cannot_be_read_starts_afresh() -> None:
    r = rule(**THRESHOLD)
    broken = {"v": 1, "s": {"since": "yesterday"}, "t": 0}
    from_the_future = {"v": 99, "s": {}, "t": 0}
    e = engine_with(r, [("r1", "D1", broken), ("r1", "D2", from_the_future)])
    assert e.states[("r1", "D1")] is None and e.states[("r1", "D2")] is None
    assert e.evaluate([reading(0, fill_pct=90)], T0).findings == []  # counting from now, not failing


def test_an_entry_records_the_first_fix_inside_as_well_as_its_confirmation() -> None:
    r = geofence(mode="enter", min_inside="30s")
    findings, _ = run(r, [at(0, OUT), at(10, IN_A), at(20, IN_A), at(45, IN_A)], device(kind="truck"))
    assert [f.action for f in findings] == ["open"]
    assert findings[0].time == reading(45).time  # confirmed 30 s after the crossing
    assert findings[0].data["crossed_at"] == reading(10).time.isoformat()  # the crossing itself
