"""Runs the rules: readings in device-time order per device, the periodic sweep, and the rules' state.

The engine knows rules only through the contract of `RuleBase` (evaluate a reading, sweep, load and dump
a state): adding a kind touches nothing here.

Late data policy: a reading older than the last one a rule has evaluated for its device is stored but
not evaluated by that rule (counted in `wastegate_late_readings_total`), so it can never flip a state
backwards; unless the rule's kind `accepts_late` (collection: a bin lift uploaded late still happened).
The state of each (rule, subject) is kept in memory and written, when it changes, in the same transaction
as the batch that changed it (table `rule_state`), with its kind's state version and the device time it
was evaluated at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from gateway import metrics
from gateway.devices import Device, DeviceDirectory
from gateway.events import Finding, Reading, StateKey
from gateway.rules.loader import RuleSet
from gateway.rules.model import (
    Lift,
    RuleBase,
    StateOf,
    SweepQuestions,
    SweepWorld,
    Verdict,
    device_context,
    reading_context,
)

log = logging.getLogger(__name__)


@dataclass
class EngineResult:
    findings: list[Finding] = field(default_factory=list)
    # what to store in `rule_state`: {"v": state version, "s": state, "t": device time evaluated}, or None
    # to delete
    states: dict[StateKey, dict[str, Any] | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.findings or self.states)


_NEVER = float("-inf")
_LIFTS_KEPT = 64  # per tag, for a sweep that asks the engine's memory (a backtest): a few weeks of lifts


@dataclass(frozen=True, slots=True)
class SweepFacts:
    """What a sweep decides on, read from what is committed: by whichever replica received the readings."""

    last_seen: Mapping[str, datetime]
    first_reading_after: Mapping[str, datetime]
    lifts: Mapping[str, Sequence[Lift]]


def _time_then_device(reading: Reading) -> tuple[datetime, str]:
    # Each device's readings in its own time order, and a batch as a whole in time order too: a rule whose
    # subjects gather several devices (a household lifted by two trucks) sees them as they happened,
    # however the batch was cut.
    return reading.time, reading.device_id


class _Selection(NamedTuple):
    """The rules of a device, as the engine runs them: with each rule's id and view of its states, and
    the rules that prepare a batch."""

    rules: tuple[RuleBase, ...]
    steps: tuple[tuple[RuleBase, str, StateOf, bool], ...]  # the rule, its id, its states, whether late is fine
    preparing: tuple[RuleBase, ...]


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
        # States as stored, read through their rule when first needed (the rule knows its state's shape
        # and version; a rule absent now may come back with a reload).
        self._stored: dict[StateKey, Mapping[str, Any]] = {}
        for rule_id, subject, stored in stored_states:
            self._stored[(rule_id, subject)] = stored
            if isinstance(stored.get("t"), int | float):
                self.evaluated_at[(rule_id, subject)] = float(stored["t"])
        self.last_seen: dict[str, datetime] = dict(last_seen or {})
        self._selection: dict[tuple[str, str], tuple[Device | None, _Selection]] = {}
        self._selections_seen: dict[tuple[RuleBase, ...], _Selection] = {}
        self._devices_version: int | None = None
        self._views: dict[str, StateOf] = {}
        self._device_contexts: dict[str, tuple[Device | None, Mapping[str, Any]]] = {}
        # What the engine saw itself, to answer the sweeps' questions when it runs alone (a backtest, a
        # rule's test case): each watched device's first reading after a time, and each tag's last lifts.
        # A gateway's sweeps ask the database instead, and it sets this off: nothing is noted per reading.
        self.remembers_readings = True
        self._watched: dict[str, float] = {}
        self._first_after: dict[str, tuple[float, datetime]] = {}
        self._lifts: dict[str, list[Lift]] = {}
        self._watch_due = True
        self._load_stored()

    def replace_rules(self, rules: RuleSet) -> None:
        """A reloaded rule set: rules that kept their id keep their state."""
        self.rules = rules
        self._selection.clear()
        self._selections_seen.clear()
        self._devices_version = None
        self._watch_due = True
        self._load_stored()

    @property
    def sweeping_rule_ids(self) -> list[str]:
        return [rule.id for rule in self.rules.rules if rule.sweeps]

    def take_over_states(self, replaced: Callable[[StateKey], bool],
                         stored: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        """The states `replaced` selects, as committed (by another replica, maybe), in place of what this
        one holds: a replica that gains a lease (the sweeps, a partition) starts from there."""
        for key in [key for key in self.states if replaced(key)]:
            del self.states[key]
            self.evaluated_at.pop(key, None)
        for key in [key for key in self._stored if replaced(key)]:
            del self._stored[key]
        by_id = self.rules.by_id
        for rule_id, subject, state in stored:
            if not replaced((rule_id, subject)):
                continue
            if isinstance(state.get("t"), int | float):
                self.evaluated_at[(rule_id, subject)] = float(state["t"])
            if rule_id in by_id:
                self.states[(rule_id, subject)] = by_id[rule_id].load_state(state)
            else:
                self._stored[(rule_id, subject)] = state
        self._watch_due = True

    def _load_stored(self) -> None:
        by_id = self.rules.by_id
        for key in [key for key in self._stored if key[0] in by_id]:
            self.states[key] = by_id[key[0]].load_state(self._stored.pop(key))

    def _follow_devices(self) -> None:
        if self._devices_version != self.devices.version:
            self._devices_version = self.devices.version
            for rule in self.rules.rules:
                try:
                    rule.devices_changed(self.devices)
                except Exception:  # that rule works from what it knew before
                    metrics.RULE_EVALUATION_ERRORS.inc()
                    log.exception("rule %s failed to follow a change of the device registry", rule.id)

    def rules_for(self, device: Device | None, device_id: str, profile: str) -> tuple[RuleBase, ...]:
        return self._select(device, device_id, profile).rules

    def _select(self, device: Device | None, device_id: str, profile: str) -> _Selection:
        cached = self._selection.get((device_id, profile))
        if cached is not None and cached[0] is device:
            return cached[1]
        chosen = tuple(rule for rule in self.rules.rules if rule.applies_to(device, device_id, profile))
        # Most devices share one of a few selections: one each, not one list per device.
        selection = self._selections_seen.get(chosen)
        if selection is None:
            selection = self._selections_seen[chosen] = _Selection(
                chosen, tuple((rule, rule.id, self._view(rule.id), rule.accepts_late) for rule in chosen
                              if rule.evaluates_readings),
                tuple(rule for rule in chosen if rule.prepares))
        self._selection[(device_id, profile)] = (device, selection)
        return selection

    def evaluate(self, readings: Sequence[Reading], now: datetime) -> EngineResult:
        self._follow_devices()
        result = EngineResult()
        plan = []
        batch_lookups: dict[RuleBase, list[Reading]] = {}
        device_of = self.devices.get
        for reading in sorted(readings, key=_time_then_device):
            device = device_of(reading.device_id)
            selection = self._select(device, reading.device_id, reading.profile)
            plan.append((reading, device, selection.steps))
            for rule in selection.preparing:
                batch_lookups.setdefault(rule, []).append(reading)
        for rule, its_readings in batch_lookups.items():
            try:
                rule.prepare(its_readings)
            except Exception:  # the rule then looks up reading by reading, or fails on its own below
                metrics.RULE_EVALUATION_ERRORS.inc()
                log.exception("rule %s failed to prepare a batch", rule.id)
        last_seen = self.last_seen
        evaluated_at = self.evaluated_at
        contexts = self._device_contexts
        remembers = self.remembers_readings
        if remembers and self._watch_due:
            self._watch(now)
        watched = self._watched if remembers else None
        for reading, device, steps in plan:
            device_id = reading.device_id
            # Silence is measured in device time too, like everything the rules decide.
            seen = last_seen.get(device_id)
            if seen is None or reading.time > seen:
                last_seen[device_id] = reading.time
            if watched:
                self._note_watched(reading)
            if remembers and reading.rfid is not None and reading.event == "bin_lift":
                self._note_lift(reading)
            if not steps:
                continue
            # A device's context is the same for all its readings: made once per device record.
            known = contexts.get(device_id)
            if known is None or known[0] is not device:
                known = contexts[device_id] = (device, device_context(device, device_id))
            context = reading_context(reading, known[1])
            t = reading.time.timestamp()
            late = False
            for rule, rule_id, state_of, accepts_late in steps:
                key = (rule_id, device_id)
                previous = evaluated_at.get(key, _NEVER)
                if t < previous and not accepts_late:
                    late = True
                    continue
                try:
                    verdict = rule.evaluate_reading(reading, context, state_of, now)
                except Exception:  # a rule bug costs that rule's verdict on this reading, not the batch
                    metrics.RULE_EVALUATION_ERRORS.inc()
                    log.exception("rule %s failed on a reading of %s", rule_id, device_id)
                    continue
                if t > previous:
                    evaluated_at[key] = t
                if verdict.findings:
                    verdict = Verdict([replace(f, message_key=reading.message_key) for f in verdict.findings],
                                      verdict.states)
                if verdict.findings or verdict.states:
                    self._apply(result, rule, verdict, t)
            if late:
                metrics.LATE_READINGS.inc()
        return result

    def _note_watched(self, reading: Reading) -> None:
        since = self._watched.get(reading.device_id)
        t = reading.time.timestamp()
        if since is None or t <= since:
            return
        known = self._first_after.get(reading.device_id)
        if known is None or known[0] != since or reading.time < known[1]:
            self._first_after[reading.device_id] = (since, reading.time)

    def _note_lift(self, reading: Reading) -> None:
        assert reading.rfid is not None
        lifts = self._lifts.setdefault(reading.rfid, [])
        lifts.append((reading.time, reading.device_id))
        if len(lifts) > 1 and lifts[-1][0] < lifts[-2][0]:
            lifts.sort()
        if len(lifts) > _LIFTS_KEPT:
            del lifts[0]

    def _watch(self, now: datetime) -> None:
        """Which devices' readings to note from now on, for the sweeps' questions (e.g. a silence open)."""
        self._watch_due = False
        self._watched = {device: at.timestamp() for device, at in self.sweep_questions(now).readings_after.items()}

    def sweep_questions(self, now: datetime) -> SweepQuestions:
        """What the sweep at `now` needs to know of the readings, for every sweeping rule."""
        self._follow_devices()
        asked = SweepQuestions()
        for rule in self.rules.rules:
            if rule.sweeps:
                try:
                    asked = asked | rule.sweep_questions(now, self.devices, self._view(rule.id))
                except Exception:
                    metrics.RULE_EVALUATION_ERRORS.inc()
                    log.exception("rule %s failed to say what its sweep needs", rule.id)
        return asked

    def _remembered(self, asked: SweepQuestions) -> SweepFacts:
        """The answers from what this engine saw itself."""
        first = {}
        for device, since in asked.readings_after.items():
            known = self._first_after.get(device)
            if known is not None and known[0] <= since.timestamp() < known[1].timestamp():
                first[device] = known[1]
        lifts = {tag: [lift for lift in self._lifts.get(tag, ()) if lift[0] >= since]
                 for tag, since in asked.lifts_since.items()}
        return SweepFacts(self.last_seen, first, lifts)

    def sweep(self, now: datetime, facts: SweepFacts | None = None) -> EngineResult:
        """The sweeping rules at `now`, deciding on `facts` read from what is committed, or (a replica
        alone, a backtest) on what this engine saw."""
        self._follow_devices()
        result = EngineResult()
        if facts is None:
            facts = self._remembered(self.sweep_questions(now))
        world = SweepWorld(self.devices, facts.last_seen, self.profile_intervals, facts.first_reading_after,
                           facts.lifts)
        now_s = now.timestamp()
        for rule in self.rules.rules:
            if not rule.sweeps:
                continue
            try:
                verdict = rule.sweep(now, world, self._view(rule.id))
            except Exception:
                metrics.RULE_EVALUATION_ERRORS.inc()
                log.exception("rule %s failed on the sweep", rule.id)
                continue
            self._apply(result, rule, verdict, None, now_s)
        if self.remembers_readings:
            self._watch(now)
        return result

    def _view(self, rule_id: str) -> StateOf:
        view = self._views.get(rule_id)
        if view is None:
            states = self.states
            view = self._views[rule_id] = lambda subject: states.get((rule_id, subject))
        return view

    def _apply(self, result: EngineResult, rule: RuleBase, verdict: Verdict, t: float | None,
               now_s: float = 0.0) -> None:
        """`t`: the device time evaluated; None for a sweep, whose states keep the device time they were
        last evaluated at (so a reading just before `now` on the device's clock is not late)."""
        result.findings.extend(verdict.findings)
        for subject, state in verdict.states.items():
            key = (rule.id, subject)
            self.states[key] = state
            if state is None:
                result.states[key] = None
            else:
                stored = rule.dump_state(state)
                stored["t"] = t if t is not None else self.evaluated_at.get(key, now_s)
                result.states[key] = stored
