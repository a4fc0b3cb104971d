"""A bin lift uploaded late (buffered in a dead zone, after the truck's later fixes): the engine still
evaluates it for collection, the household counts as lifted, and an incident the sweep opened meanwhile is
resolved, on the next sweep, no earlier than it opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.devices import Device, DeviceDirectory
from gateway.events import Reading
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet, load_rules
from tests.support import REPO

MONDAY = datetime(2026, 1, 5, 5, 0, tzinfo=UTC)  # 06:00 in Barcelona: H-0001's window is 06:00–12:00


def fix(minutes: float, **fields: object) -> Reading:
    time = MONDAY + timedelta(minutes=minutes)
    return Reading("T-5", time, time, b"k%d" % int(minutes * 60), "truck", 41.4036, 2.1744,
                   **fields)  # type: ignore[arg-type]


def engine() -> RuleEngine:
    collection = load_rules(REPO / "rules").by_id["door-to-door"]
    truck = Device("T-5", "truck", "truck", "Truck 5")
    return RuleEngine(RuleSet((collection,), ()), DeviceDirectory([truck]), {})


def test_a_lift_uploaded_after_later_fixes_is_still_a_lift() -> None:
    rules = engine()
    rules.sweep(MONDAY)  # starts watching
    rules.evaluate([fix(300, speed_kmh=20.0)], MONDAY)  # a fix at 11:00, then the lift of 10:30 arrives
    rules.evaluate([fix(270, event="bin_lift", rfid="E2003412010B0001")], MONDAY)
    judged = rules.sweep(MONDAY + timedelta(hours=6, minutes=31))  # 12:00 + 30 min of grace, passed
    assert "household:H-0001" not in [f.subject for f in judged.findings]


def test_a_late_lift_resolves_no_earlier_than_the_incident_opened() -> None:
    rules = engine()
    rules.sweep(MONDAY)
    opened = rules.sweep(MONDAY + timedelta(hours=6, minutes=31)).findings
    missed = next(f for f in opened if f.subject == "household:H-0001")
    assert missed.time == MONDAY + timedelta(hours=6)  # the window's end, 12:00 in Barcelona
    assert rules.evaluate([fix(280, event="bin_lift", rfid="E2003412010B0001")], MONDAY).findings == []
    resolved = rules.sweep(MONDAY + timedelta(hours=6, minutes=32)).findings  # the next sweep reads the lift
    (resolution,) = [f for f in resolved if f.subject == "household:H-0001"]
    assert resolution.action == "resolve" and resolution.time == missed.time  # the lift was at 10:40
