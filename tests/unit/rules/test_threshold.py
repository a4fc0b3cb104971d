from __future__ import annotations

from tests.unit.rules.helpers import actions, reading, rule, run

FULL = {"kind": "threshold", "condition": "fill_pct >= 80.0", "clear": "fill_pct < 50.0", "for": "20m"}


def test_opens_only_after_holding_for_the_duration() -> None:
    r = rule(**FULL)
    findings, state = run(r, [reading(0, fill_pct=85), reading(600, fill_pct=86), reading(1200, fill_pct=87)])
    assert actions(findings) == [("open", "08:20:00")]
    assert state is not None and state["active"]


def test_a_dip_restarts_the_pending_duration() -> None:
    r = rule(**FULL)
    findings, _ = run(r, [reading(0, fill_pct=85), reading(600, fill_pct=70), reading(900, fill_pct=85),
                          reading(1800, fill_pct=85), reading(2100, fill_pct=85)])
    assert actions(findings) == [("open", "08:35:00")]


def test_hysteresis_no_flapping_between_the_two_levels() -> None:
    r = rule(**{**FULL, "for": "0s"})
    levels = [81, 79, 82, 75, 60, 81, 55, 49, 51, 81]
    findings, _ = run(r, [reading(i * 60, fill_pct=v) for i, v in enumerate(levels)])
    assert actions(findings) == [("open", "08:00:00"), ("resolve", "08:07:00"), ("open", "08:09:00")]
    # the naive rule (no clear level) flaps on every crossing of 80
    naive = rule(kind="threshold", condition="fill_pct >= 80.0")
    naive_findings, _ = run(naive, [reading(i * 60, fill_pct=v) for i, v in enumerate(levels)])
    assert len(naive_findings) == 7


def test_readings_without_the_field_change_nothing() -> None:
    r = rule(**{**FULL, "for": "0s"})
    findings, state = run(r, [reading(0, fill_pct=90), reading(60, battery_pct=50), reading(120)])
    assert actions(findings) == [("open", "08:00:00")] and state is not None and state["active"]


def test_severity_steps_escalate_once() -> None:
    r = rule(**{**FULL, "for": "0s", "severity_steps": [{"when": "fill_pct >= 95.0", "severity": "major"}]})
    findings, _ = run(r, [reading(0, fill_pct=85), reading(60, fill_pct=96), reading(120, fill_pct=97)])
    assert [(f.action, f.severity) for f in findings] == [("open", "minor"), ("escalate", "major")]


def test_cooldown_delays_a_reopening() -> None:
    r = rule(**{**FULL, "for": "0s", "incident": {"service_code": "x", "title": "t", "cooldown": "30m"}})
    findings, _ = run(r, [reading(0, fill_pct=90), reading(60, fill_pct=10), reading(120, fill_pct=90),
                          reading(1000, fill_pct=90), reading(1900, fill_pct=90)])
    assert actions(findings) == [("open", "08:00:00"), ("resolve", "08:01:00"), ("open", "08:31:40")]


def test_no_auto_resolve_keeps_the_incident_for_staff() -> None:
    r = rule(**{**FULL, "for": "0s", "incident": {"service_code": "x", "title": "t", "auto_resolve": False}})
    findings, _ = run(r, [reading(0, fill_pct=90), reading(60, fill_pct=10), reading(120, fill_pct=90)])
    assert actions(findings) == [("open", "08:00:00"), ("open", "08:02:00")]  # the second is an occurrence


def test_clear_for_needs_the_clear_condition_to_last() -> None:
    r = rule(**{**FULL, "for": "0s", "clear_for": "10m"})
    findings, _ = run(r, [reading(0, fill_pct=90), reading(60, fill_pct=10), reading(300, fill_pct=90),
                          reading(400, fill_pct=10), reading(1000, fill_pct=10)])
    assert actions(findings) == [("open", "08:00:00"), ("resolve", "08:16:40")]


def test_titles_are_rendered_from_the_reading_and_device() -> None:
    r = rule(**{**FULL, "for": "0s", "incident": {"service_code": "container_full",
                                                   "title": "{device.name} at {fill_pct:.0f}%"}})
    (finding,), _ = run(r, [reading(0, fill_pct=88.4)])
    assert finding.title == "Dev D1 at 88%" and finding.service_code == "container_full"
    assert finding.dedupe_key == "r1:D1" and finding.data["fill_pct"] == 88.4
