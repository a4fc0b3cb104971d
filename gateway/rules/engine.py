"""Runs the rules: readings in device-time order per device, the periodic sweep, and the rules' state.

Late data policy: a reading older than the last one a rule has evaluated for its device is stored but
not evaluated by that rule (counted in `wastegate_late_readings_total`), so it can never flip a state
backwards. The state of each (rule, device) is kept in memory and written, when it changes, in the same
transaction as the batch that changed it (table `rule_state`), with the device time it was evaluated at.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from gateway import metrics
from gateway.devices import Device, DeviceDirectory
from gateway.events import Finding, Reading
from gateway.rules.absence import AbsenceRule
from gateway.rules.collection import CollectionRule, Household
from gateway.rules.loader import RuleSet
from gateway.rules.model import RuleBase, device_context, reading_context

StateKey = tuple[str, str]  # (rule id, device id)
log = logging.getLogger(__name__)


@dataclass
class EngineResult:
    findings: list[Finding] = field(default_factory=list)
    # what to store in `rule_state`: {"s": state, "t": device time evaluated}, or None to delete
    states: dict[StateKey, dict[str, Any] | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.findings or self.states)


class RuleEngine:
    def __init__(
        self,
        rules: RuleSet,
        devices: DeviceDirectory,
        profile_intervals: Mapping[str, float | None],
        stored_states: Iterable[tuple[str, str, Mapping[str, Any]]] = (),
        last_seen: Mapping[str, datetime] | None = None,
    ) -> None:
        self.rules = rules
        self.devices = devices
        self.profile_intervals = dict(profile_intervals)
        self.states: dict[StateKey, Mapping[str, Any] | None] = {}
        self.evaluated_at: dict[StateKey, float] = {}
        for rule_id, device_id, stored in stored_states:
            self.states[(rule_id, device_id)] = stored.get("s")
            if isinstance(stored.get("t"), int | float):
                self.evaluated_at[(rule_id, device_id)] = float(stored["t"])
        self.last_seen: dict[str, datetime] = dict(last_seen or {})
        self._selection: dict[tuple[str, str], tuple[Device | None, tuple[RuleBase, ...]]] = {}
        self._selections_seen: dict[tuple[RuleBase, ...], tuple[RuleBase, ...]] = {}
        self._households: dict[str, tuple[int, Mapping[str, Household]]] = {}

    def replace_rules(self, rules: RuleSet) -> None:
        """A reloaded rule set: rules that kept their id keep their state."""
        self.rules = rules
        self._selection.clear()
        self._selections_seen.clear()
        self._households.clear()

    def rules_for(self, device: Device | None, device_id: str, profile: str) -> tuple[RuleBase, ...]:
        cached = self._selection.get((device_id, profile))
        if cached is not None and cached[0] is device:
            return cached[1]
        chosen = tuple(rule for rule in self.rules.rules if rule.applies_to(device, device_id, profile))
        # Most devices share one of a few selections: one tuple each, not one list per device.
        chosen = self._selections_seen.setdefault(chosen, chosen)
        self._selection[(device_id, profile)] = (device, chosen)
        return chosen

    def evaluate(self, readings: Sequence[Reading], now: datetime) -> EngineResult:
        result = EngineResult()
        plan = []
        batch_lookups: dict[RuleBase, list[Reading]] = {}
        for reading in sorted(readings, key=lambda r: (r.device_id, r.time)):
            device = self.devices.get(reading.device_id)
            rules = self.rules_for(device, reading.device_id, reading.profile)
            plan.append((reading, device, rules))
            for rule in rules:
                if rule.prepares:
                    batch_lookups.setdefault(rule, []).append(reading)
        for rule, its_readings in batch_lookups.items():
            try:
                rule.prepare(its_readings)
            except Exception:  # the rule then looks up reading by reading, or fails on its own below
                metrics.RULE_EVALUATION_ERRORS.inc()
                log.exception("rule %s failed to prepare a batch", rule.id)
        for reading, device, rules in plan:
            # Silence is measured in device time too, like everything the rules decide.
            seen = self.last_seen.get(reading.device_id)
            if seen is None or reading.time > seen:
                self.last_seen[reading.device_id] = reading.time
            if not rules:
                continue
            context = reading_context(reading, device)
            t = reading.time.timestamp()
            late = False
            for rule in rules:
                key = (rule.id, reading.device_id)
                if t < self.evaluated_at.get(key, float("-inf")):
                    late = True
                    continue
                if isinstance(rule, CollectionRule):
                    self.evaluated_at[key] = t
                    lifts, household_states = rule.on_lift(reading, context, self.households_of(rule),
                                                           partial(self._state_of, rule.id))
                    result.findings.extend(lifts)
                    for subject, state in household_states.items():
                        self._store(result, (rule.id, subject), state, t)
                    continue
                before = self.states.get(key)
                try:
                    outcome = rule.evaluate(reading, context, before, now)
                except Exception:  # a rule bug costs that rule's verdict on this reading, not the batch
                    metrics.RULE_EVALUATION_ERRORS.inc()
                    log.exception("rule %s failed on a reading of %s", rule.id, reading.device_id)
                    continue
                self.evaluated_at[key] = t
                result.findings.extend(outcome.findings)
                if outcome.state != before:
                    self._store(result, key, outcome.state, t)
            if late:
                metrics.LATE_READINGS.inc()
        return result

    def households_of(self, rule: CollectionRule) -> Mapping[str, Household]:
        cached = self._households.get(rule.id)
        if cached is None or cached[0] != self.devices.version:
            cached = (self.devices.version, rule.households(self.devices))
            self._households[rule.id] = cached
        return cached[1]

    def sweep(self, now: datetime) -> EngineResult:
        result = EngineResult()
        for collection in [rule for rule in self.rules.rules if isinstance(rule, CollectionRule)]:
            found, states = collection.sweep_households(
                now, self.households_of(collection), partial(self._state_of, collection.id))
            result.findings.extend(found)
            for subject, state in states.items():
                self._store(result, (collection.id, subject), state, now.timestamp())
        sweeping = [rule for rule in self.rules.rules if isinstance(rule, AbsenceRule)]
        if not sweeping:
            return result
        for device in self.devices:
            for rule in sweeping:
                if not rule.applies_to(device, device.device_id, device.profile):
                    continue
                key = (rule.id, device.device_id)
                before = self.states.get(key)
                outcome = rule.sweep(device_context(device, device.device_id), self.last_seen.get(device.device_id),
                                     self.profile_intervals.get(device.profile), before, now)
                result.findings.extend(outcome.findings)
                if outcome.state != before:
                    self._store(result, key, outcome.state, self.evaluated_at.get(key, now.timestamp()))
        return result

    def _state_of(self, rule_id: str, subject: str) -> Mapping[str, Any] | None:
        return self.states.get((rule_id, subject))

    def _store(self, result: EngineResult, key: StateKey, state: Mapping[str, Any] | None, t: float) -> None:
        self.states[key] = state
        result.states[key] = None if state is None else {"s": dict(state), "t": t}
