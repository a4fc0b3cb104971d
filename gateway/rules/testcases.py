"""Test cases of rules: `rules/tests/*.yaml`, run by `wastegate rules check` and by the test suite.

A case names a rule, a device, and steps on a fake clock: a reading at a time (`at`, from an arbitrary
start), or a sweep; each step lists the findings it must produce (`expect`, default none):

    rule: container-full
    device: {id: C-1, kind: container, attributes: {bin_depth_mm: 1200}}
    steps:
      - {at: 0m, reading: {fill_pct: 85}}
      - {at: 25m, reading: {fill_pct: 86}, expect: [{action: open, severity: minor}]}
      - {sweep: 5h, expect: []}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gateway.devices import Device, DeviceDirectory
from gateway.events import CANONICAL_FIELDS, Reading
from gateway.rules.durations import Duration
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet

START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # a Monday, 07:00 in Barcelona


class ExpectedFinding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    severity: str | None = None
    subject: str | None = None
    title: str | None = None  # a substring of the rendered title


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration | None = None
    sweep: Duration | None = None
    reading: dict[str, Any] | None = None
    expect: list[ExpectedFinding] = Field(default_factory=list)


class CaseDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    profile: str = "test"
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    expected_interval_s: float | None = None  # the profile's default, for absence rules


class RuleCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str
    description: str = ""
    # The time `at` and `sweep` count from (with its UTC offset); by default a Monday, 06:00 UTC.
    start: AwareDatetime | None = None
    device: CaseDevice
    steps: list[Step]


@dataclass(frozen=True)
class RuleCaseOutcome:
    path: Path
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def discover(rules_dir: Path) -> list[Path]:
    return sorted((rules_dir / "tests").glob("*.yaml"))


def run_case(path: Path, rules: RuleSet) -> RuleCaseOutcome:
    try:
        case = RuleCase.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        return RuleCaseOutcome(path, (f"cannot read the case: {exc}",))
    rule = rules.by_id.get(case.rule)
    if rule is None:
        return RuleCaseOutcome(path, (f"no rule {case.rule!r}",))
    spec = case.device
    device = Device(spec.id, spec.profile, spec.kind, spec.name, spec.lat, spec.lon,
                    MappingProxyType(spec.attributes))
    engine = RuleEngine(RuleSet((rule,), ()), DeviceDirectory([device]), {spec.profile: spec.expected_interval_s})
    problems = []
    start = case.start or START
    for number, step in enumerate(case.steps, 1):
        if step.reading is not None and step.at is not None:
            time = start + step.at
            values = {k: v for k, v in step.reading.items() if k in CANONICAL_FIELDS}
            extra = {k: v for k, v in step.reading.items() if k not in CANONICAL_FIELDS}
            reading = Reading(spec.id, time, time, b"case", spec.profile, extra=MappingProxyType(extra), **values)
            findings = engine.evaluate([reading], time).findings
        elif step.sweep is not None:
            findings = engine.sweep(start + step.sweep).findings
        else:
            problems.append(f"step {number}: give `at` with a `reading`, or `sweep`")
            continue
        if not _matches(findings, step.expect):
            got = [f"{f.action} {f.severity} {f.subject} {f.title!r}" for f in findings] or ["nothing"]
            want: list[Any] = [e.model_dump(exclude_none=True) for e in step.expect] or ["nothing"]
            problems.append(f"step {number} ({step.at or step.sweep}): expected {want}, got {got}")
    return RuleCaseOutcome(path, tuple(problems))


def _matches(findings: list[Any], expected: list[ExpectedFinding]) -> bool:
    if len(findings) != len(expected):
        return False
    for finding, want in zip(findings, expected, strict=True):
        if finding.action != want.action:
            return False
        if want.severity is not None and finding.severity != want.severity:
            return False
        if want.subject is not None and finding.subject != want.subject:
            return False
        if want.title is not None and want.title not in finding.title:
            return False
    return True




__all__ = ["RuleCase", "RuleCaseOutcome", "discover", "run_case"]
