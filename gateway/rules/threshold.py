"""`threshold`: a condition that must hold `for` a while to open, a separate `clear` condition that must
hold `clear_for` to resolve (hysteresis), and optional severity steps.

State per device: `active`, `since` (when the condition started holding), `clear_since`, `severity`,
`resolved_at` (for the cool-down). Times are device time, as epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic reads the shape of a typing_extensions TypedDict on 3.11

from gateway.events import Reading
from gateway.rules.durations import Duration
from gateway.rules.expressions import Condition
from gateway.rules.model import READING_VARIABLES, Outcome, RuleBase, RuleConfigBase, Severity, cooling_down, since


class SeverityStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str
    severity: Severity


class ThresholdConfig(RuleConfigBase):
    kind: Literal["threshold"]
    condition: str
    # How long the condition must hold before the incident opens (0: at once); written `for:` in YAML.
    for_: Duration = Field(default=timedelta(0), alias="for")
    # The condition that resolves it; by default, the opening condition no longer holding.
    clear: str | None = None
    clear_for: Duration = timedelta(0)
    severity_steps: tuple[SeverityStep, ...] = ()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def build(self, zones: object, directory: object = None) -> ThresholdRule:
        return ThresholdRule(self)


class ThresholdState(TypedDict, total=False):
    active: bool  # the incident is open
    since: float  # device time the condition started holding (while not yet open)
    clear_since: float | None  # device time the clear condition started holding (while open)
    severity: str  # the severity opened or escalated to
    resolved_at: float  # device time of the last resolution (for the cool-down)


class ThresholdRule(RuleBase):
    kind = "threshold"
    State = ThresholdState

    def __init__(self, config: ThresholdConfig) -> None:
        super().__init__(config)
        self.condition = Condition(config.condition, READING_VARIABLES)
        self.clear = Condition(config.clear, READING_VARIABLES) if config.clear else None
        self.for_s = config.for_.total_seconds()
        self.clear_for_s = config.clear_for.total_seconds()
        self.steps = [(Condition(s.when, READING_VARIABLES), s.severity) for s in config.severity_steps]

    def evaluate(self, reading: Reading, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        if not (state and state.get("active")):
            holds = self.condition.evaluate(context)
            if holds is None:
                return Outcome(state)
            if not holds:
                if state is None or (state and "since" not in state):
                    return Outcome(state)  # quiet and staying quiet: the common case, without a copy
                current = dict(state)
                current.pop("since", None)
                return Outcome(current or None)
        t = reading.time.timestamp()
        current = dict(state or {})
        if not current.get("active"):
            started = since(current, "since") or t
            current["since"] = started
            if t - started < self.for_s or cooling_down(current, self.incident.cooldown, t):
                return Outcome(current)
            severity = self._severity(context)
            current.update(active=True, severity=severity, clear_since=None)
            current.pop("since", None)
            return Outcome(current, [self.finding("open", reading.device_id, reading.time, context,
                                                  severity=severity, data=self._evidence(context))])
        clears = self.clear.evaluate(context) if self.clear else _negate(self.condition.evaluate(context))
        if clears is None:
            return Outcome(state)
        if clears:
            started = since(current, "clear_since") or t
            current["clear_since"] = started
            if t - started < self.clear_for_s:
                return Outcome(current)
            resolved = {"resolved_at": t}
            if not self.incident.auto_resolve:
                return Outcome(resolved)
            return Outcome(resolved, [self.finding("resolve", reading.device_id, reading.time, context,
                                                   data=self._evidence(context))])
        current["clear_since"] = None
        severity = self._severity(context)
        if severity != current.get("severity") and _rank(severity) > _rank(current.get("severity")):
            current["severity"] = severity
            return Outcome(current, [self.finding("escalate", reading.device_id, reading.time, context,
                                                  severity=severity, data=self._evidence(context))])
        return Outcome(current)

    def _severity(self, context: Mapping[str, Any]) -> str:
        chosen = self.incident.severity
        for condition, severity in self.steps:
            if condition.evaluate(context) and _rank(severity) > _rank(chosen):
                chosen = severity
        return chosen

    def _evidence(self, context: Mapping[str, Any]) -> dict[str, Any]:
        names = {"fill_pct", "temperature_c", "battery_pct", "battery_v", "tilted", "speed_kmh", "distance_mm"}
        return {name: context[name] for name in names if context.get(name) is not None}


_ORDER = ("info", "minor", "major", "critical")


def _rank(severity: object) -> int:
    return _ORDER.index(severity) if severity in _ORDER else -1


def _negate(value: bool | None) -> bool | None:
    return None if value is None else not value
