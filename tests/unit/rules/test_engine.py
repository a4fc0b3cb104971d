from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.devices import DeviceDirectory
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet, load_rules
from tests.unit.rules.helpers import T0, device, reading, rule

FULL = {"kind": "threshold", "condition": "fill_pct >= 80.0", "clear": "fill_pct < 50.0",
        "applies_to": {"kinds": ["container"]}}


Stored = list[tuple[str, str, dict[str, Any]]]


def engine(*rules: object, devices: DeviceDirectory | None = None, stored: Stored | None = None) -> RuleEngine:
    directory = devices or DeviceDirectory([device("D1"), device("D2"), device("T1", kind="truck")])
    return RuleEngine(RuleSet(tuple(rules), ()), directory, {"p": 600.0}, stored or [])  # type: ignore[arg-type]


def test_readings_are_evaluated_in_device_time_order_per_device() -> None:
    e = engine(rule(**FULL))
    # delivered out of order within a batch: 90 at 08:02 then 10 at 08:01
    result = e.evaluate([reading(120, fill_pct=90), reading(60, fill_pct=10)], T0)
    assert [f.action for f in result.findings] == ["open"]
    stored = result.states[("r1", "D1")]
    assert stored is not None and stored["t"] == reading(120).time.timestamp()


def test_a_late_reading_is_not_evaluated() -> None:
    e = engine(rule(**FULL))
    e.evaluate([reading(120, fill_pct=90)], T0)
    late = e.evaluate([reading(60, fill_pct=10)], T0)  # older than what was evaluated: would resolve
    assert late.findings == [] and late.states == {}
    state = e.states[("r1", "D1")]
    assert state is not None and state["active"]


def test_rules_apply_only_to_their_devices() -> None:
    e = engine(rule(**FULL))
    result = e.evaluate([reading(0, "T1", fill_pct=99), reading(0, "unknown", fill_pct=99)], T0)
    assert result.findings == []


def test_state_survives_a_restart_through_what_is_stored() -> None:
    pending = rule(**{**FULL, "for": "10m"})
    first = engine(pending)
    saved = first.evaluate([reading(0, fill_pct=90), reading(540, fill_pct=90)], T0)  # 9 of 10 minutes
    assert saved.findings == []
    stored = [(rule_id, device_id, state) for (rule_id, device_id), state in saved.states.items() if state]
    restarted = engine(pending, stored=stored)
    after = restarted.evaluate([reading(600, fill_pct=90)], T0)  # one more minute, not ten
    assert [f.action for f in after.findings] == ["open"]
    assert restarted.evaluate([reading(300, fill_pct=10)], T0).findings == []  # late after restart too


def test_a_reloaded_rule_keeps_its_state(tmp_path: Path) -> None:
    e = engine(rule(**FULL))
    e.evaluate([reading(0, fill_pct=90)], T0)
    e.replace_rules(RuleSet((rule(**{**FULL, "clear": "fill_pct < 20.0"}),), ()))
    assert e.evaluate([reading(60, fill_pct=30)], T0).findings == []  # still open: new clear level
    assert [f.action for f in e.evaluate([reading(120, fill_pct=10)], T0).findings] == ["resolve"]


def test_the_sweep_finds_silent_devices() -> None:
    from datetime import timedelta

    silent = rule(kind="absence", id="silent", applies_to={"kinds": ["container"]}, missed_reports=2)
    e = engine(silent)
    e.last_seen.update({"D1": T0, "D2": T0 + timedelta(minutes=15)})
    assert e.sweep(T0 + timedelta(minutes=24)).findings == []  # the second report is late, not missed yet
    result = e.sweep(T0 + timedelta(minutes=26))
    assert [(f.action, f.subject) for f in result.findings] == [("open", "D1")]
    assert result.findings[0].time == T0 + timedelta(minutes=25)  # when the silence went beyond the limit
    assert e.sweep(T0 + timedelta(minutes=27)).findings == []
    assert e.evaluate([reading(28 * 60, "D1")], T0).findings == []
    back = e.sweep(T0 + timedelta(minutes=29))  # the sweep after the reading resolves, dated at the reading
    assert [(f.action, f.subject, f.time) for f in back.findings] == [("resolve", "D1", T0 + timedelta(minutes=28))]


def test_shipped_rules_load() -> None:
    from gateway.catalogue import load_service_codes
    from tests.support import REPO

    rules = load_rules(REPO / "rules", load_service_codes(REPO / "services.yaml"))
    assert {"container-full", "container-fire", "truck-overspeed-school-zone", "sensor-silent"} <= set(rules.by_id)


def test_a_failing_rule_costs_its_verdict_not_the_batch() -> None:
    class Broken:
        id = "broken"
        kind = "threshold"
        prepares = True
        accepts_late = False
        evaluates_readings = True
        sweeps = False

        def applies_to(self, *args: object) -> bool:
            return True

        def prepare(self, *args: object) -> None:
            raise ValueError("bug in the batch lookup")

        def devices_changed(self, *args: object) -> None:
            raise TypeError("bug in its view of the registry")

        def evaluate_reading(self, *args: object) -> object:
            raise KeyError("bug")

    e = engine(Broken(), rule(**FULL))
    result = e.evaluate([reading(0, fill_pct=90)], T0)
    assert [f.rule_id for f in result.findings] == ["r1"]


def test_a_changed_device_record_reaches_the_conditions() -> None:
    over = rule(kind="threshold", condition="fill_pct >= device.alarm_pct", applies_to={"kinds": ["container"]})
    directory = DeviceDirectory([device("D1", alarm_pct=90)])
    e = engine(over, devices=directory)
    assert e.evaluate([reading(0, fill_pct=85)], T0).findings == []
    directory.replace_all([device("D1", alarm_pct=80)])  # the registry refreshed: a new record
    assert [f.action for f in e.evaluate([reading(60, fill_pct=85)], T0).findings] == ["open"]
