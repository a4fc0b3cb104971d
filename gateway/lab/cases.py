"""From history to a rule test case: the readings of one device around a real event, and what a rule
made of them, written as a `rules/tests/` case (see `gateway.rules.testcases`), so a real situation
becomes a regression test of the rule.

The case starts from a fresh state at the first reading of the window, as `rules check` runs it, so what
it expects is what the rule finds from those readings alone (a duration that began before the window
shows up later, or not at all: widen `--window`). Sweeps are steps only where they found something or
changed a state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

from gateway.devices import Device, DeviceDirectory
from gateway.events import CANONICAL_FIELDS, Finding, Reading
from gateway.lab.backtest import BacktestError
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet
from gateway.rules.testcases import run_case
from gateway.store.devices import devices_by_id
from gateway.store.telemetry import stored_readings


def _seconds(delta: timedelta) -> str:
    seconds = round(delta.total_seconds(), 3)
    return f"{seconds:g}s"


def _expect(findings: list[Finding]) -> list[dict[str, Any]]:
    return [{"action": f.action, "severity": f.severity, "subject": f.subject, "title": f.title} for f in findings]


def _values(reading: Reading) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(reading, name) for name in CANONICAL_FIELDS
                              if getattr(reading, name) is not None}
    values.update({key: value for key, value in reading.extra.items() if key not in CANONICAL_FIELDS})
    return values


def build_case(rule_id: str, rules: RuleSet, device: Device, readings: list[Reading],
               profile_interval_s: float | None, sweep_every: timedelta, name: str,
               around: datetime) -> tuple[dict[str, Any], int]:
    """The case as a document, and how many findings it expects."""
    rule = rules.by_id[rule_id]
    one = RuleSet((rule,), ())
    engine = RuleEngine(one, DeviceDirectory([device]), {device.profile: profile_interval_s})
    start = readings[0].time
    steps: list[dict[str, Any]] = []
    found = 0
    next_sweep = start + sweep_every
    for reading in readings:
        while rule.sweeps and next_sweep <= reading.time:
            result = engine.sweep(next_sweep)
            if result.findings or result.states:
                steps.append({"sweep": _seconds(next_sweep - start), "expect": _expect(result.findings)})
                found += len(result.findings)
            next_sweep += sweep_every
        findings = engine.evaluate([reading], reading.time).findings
        step: dict[str, Any] = {"at": _seconds(reading.time - start), "reading": _values(reading)}
        if findings:
            step["expect"] = _expect(findings)
            found += len(findings)
        steps.append(step)
    attributes = {k: v for k, v in device.attributes.items()}
    case_device: dict[str, Any] = {"id": device.device_id, "kind": device.kind, "profile": device.profile}
    if device.name:
        case_device["name"] = device.name
    if device.lat is not None and device.lon is not None:
        case_device.update(lat=device.lat, lon=device.lon)
    if attributes:
        case_device["attributes"] = attributes
    if profile_interval_s is not None:
        case_device["expected_interval_s"] = profile_interval_s
    document = {
        "rule": rule_id,
        "description": f"{name}: {device.device_id} around {around.isoformat()}, saved from history "
                       f"by `wastegate rules backtest --save-case`",
        "start": start.isoformat(),
        "device": case_device,
        "steps": steps,
    }
    return document, found


def save_cases(conn: psycopg.Connection[Any], rules: RuleSet, rules_dir: Path, name: str, device_id: str,
               around: datetime, window: timedelta, rule_id: str | None,
               profile_intervals: Mapping[str, float | None], sweep_every: timedelta) -> list[tuple[Path, int]]:
    """Writes `rules_dir/tests/NAME.yaml` (NAME-<rule>.yaml when several rules apply and none is named)
    and checks that each passes against `rules`; returns each path and its number of expected findings."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise BacktestError(f"a case name is letters, digits, - and _: {name!r}")
    devices = devices_by_id(conn, [device_id])
    if not devices:
        raise BacktestError(f"no device {device_id!r} is registered")
    device = devices[0]
    with conn.transaction():
        readings = list(stored_readings(conn, around - window, around + window, [device_id]))
    if not readings:
        raise BacktestError(f"{device_id} has no reading between {(around - window).isoformat()} and "
                            f"{(around + window).isoformat()}")
    if rule_id is not None:
        chosen = [rule_id]
    else:
        chosen = [rule.id for rule in rules.rules if rule.applies_to(device, device.device_id, device.profile)]
        if not chosen:
            raise BacktestError(f"no rule applies to {device_id}")
    built = [(chosen_id, *build_case(chosen_id, rules, device, readings, profile_intervals.get(device.profile),
                                     sweep_every, name, around)) for chosen_id in chosen]
    if rule_id is None:
        built = [case for case in built if case[2]]
        if not built:
            raise BacktestError(f"no rule found anything for {device_id} in this window: widen --window, or name "
                                "a rule with --rule to save a quiet case")
    written = []
    (rules_dir / "tests").mkdir(parents=True, exist_ok=True)
    for chosen_id, document, found in built:
        path = rules_dir / "tests" / (f"{name}.yaml" if len(built) == 1 else f"{name}-{chosen_id}.yaml")
        if path.exists():
            raise BacktestError(f"{path} exists already: choose another name, or remove it first")
        # Checked before it takes its place: a case that does not pass is not left among the tests.
        draft = path.with_name(f".{path.name}.draft")
        draft.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
        try:
            outcome = run_case(draft, rules)
            if not outcome.ok:
                raise BacktestError(f"the case for {chosen_id} does not pass: " + "; ".join(outcome.problems))
            draft.replace(path)
        finally:
            draft.unlink(missing_ok=True)
        written.append((path, found))
    return written
