"""`absence`: a device silent longer than it should be. Decided on the periodic sweep alone, against the
injected clock, from each device's latest reading as committed (by whichever replica received it); the
incident is dated when the silence went beyond what is allowed, and resolved at the device time of the
first reading after it, by the sweep that reads that reading.

The expected interval is the device's `expected_interval_s` attribute, else its profile's default;
silence beyond `missed_reports` intervals, plus half of one (a report is missed once it is half an
interval overdue), or beyond a fixed `after`, opens the incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field
from typing_extensions import TypedDict  # pydantic reads the shape of a typing_extensions TypedDict on 3.11

from gateway.devices import DeviceDirectory
from gateway.events import Reading
from gateway.rules.durations import Duration
from gateway.rules.model import (
    Outcome,
    RuleBase,
    RuleConfigBase,
    StateOf,
    SweepQuestions,
    SweepWorld,
    Verdict,
    cooling_down,
    device_context,
)


class AbsenceConfig(RuleConfigBase):
    kind: Literal["absence"]
    missed_reports: float = Field(default=3.0, gt=0)
    after: Duration | None = None

    def build(self, zones: object, directory: object = None) -> AbsenceRule:
        return AbsenceRule(self)


class AbsenceState(TypedDict, total=False):
    active: bool  # a "silent" incident is open
    since: float  # while active: device time of the last reading before the silence (epoch s)
    resolved_at: float  # device time of the reading that resolved the last one (for the cool-down)


class AbsenceRule(RuleBase):
    kind = "absence"
    sweeps = True
    evaluates_readings = False  # decided on the sweep alone, from the readings committed
    State = AbsenceState
    state_version = 2

    def __init__(self, config: AbsenceConfig) -> None:
        super().__init__(config)
        self.missed_reports = config.missed_reports
        self.after_s = config.after.total_seconds() if config.after else None

    def silence_allowed_s(self, device: Mapping[str, Any], profile_interval_s: float | None) -> float | None:
        if self.after_s is not None:
            return self.after_s
        interval = device.get("expected_interval_s", profile_interval_s)
        if not isinstance(interval, int | float) or interval <= 0:
            return None
        # A report is missed once it is half an interval overdue: the third of three reports arriving a
        # few seconds late (the radio's retries, a clock's drift) is not a silence.
        return float(interval) * (self.missed_reports + 0.5)

    def evaluate(self, reading: Reading, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        return Outcome(state)

    def sweep_questions(self, now: datetime, devices: DeviceDirectory, state_of: StateOf) -> SweepQuestions:
        """For each device silent now: its first reading after the silence began, which ends it."""
        asked = {}
        for device in devices:
            state = state_of(device.device_id)
            if state and state.get("active") and isinstance(since := state.get("since"), int | float):
                asked[device.device_id] = datetime.fromtimestamp(since, UTC)
        return SweepQuestions(readings_after=asked)

    def sweep(self, now: datetime, world: SweepWorld, state_of: StateOf) -> Verdict:
        verdict = Verdict()
        for device in world.devices:
            if not self.applies_to(device, device.device_id, device.profile):
                continue
            before = state_of(device.device_id)
            state = before
            context = device_context(device, device.device_id)
            last_seen = world.last_seen.get(device.device_id)
            if state and state.get("active"):
                since = state.get("since")
                # Version 1 did not keep when the silence began: an incident open then is resolved by the
                # first reading after the first sweep that reads it.
                if not isinstance(since, int | float):
                    if last_seen is not None:
                        verdict.states[device.device_id] = {**state, "since": last_seen.timestamp()}
                    continue
                back = world.first_reading_after.get(device.device_id)
                if back is None or back.timestamp() <= since:
                    continue
                # Resolved at the device time of the reading that ended the silence, whenever a sweep reads it.
                verdict.findings.append(self.finding("resolve", device.device_id, back, context,
                                                     data={"reported_at": back.isoformat()}))
                state = {"resolved_at": back.timestamp()}
            outcome = self.check_silence(context, last_seen, world.profile_intervals.get(device.profile), state, now)
            verdict.findings.extend(outcome.findings)
            if outcome.state != before:
                verdict.states[device.device_id] = outcome.state
        return verdict

    def check_silence(self, device: Mapping[str, Any], last_seen: datetime | None, profile_interval_s: float | None,
                      state: Mapping[str, Any] | None, now: datetime) -> Outcome:
        allowed = self.silence_allowed_s(device, profile_interval_s)
        if last_seen is None or allowed is None or (state or {}).get("active"):
            return Outcome(state)
        silent_s = (now - last_seen).total_seconds()
        if silent_s <= allowed or cooling_down(state, self.incident.cooldown, now.timestamp()):
            return Outcome(state)
        context = {"device": device, "device_id": device.get("id"), "silent_for": _human(silent_s),
                   "last_seen": last_seen.isoformat()}
        # The incident begins when the silence went beyond what is allowed, not when a sweep noticed: the
        # same history gives the same opening whatever the sweeps' timing (the rule lab relies on it).
        began = last_seen + timedelta(seconds=allowed)
        return Outcome({**(state or {}), "active": True, "since": last_seen.timestamp()}, [self.finding(
            "open", str(device.get("id")), began, context,
            data={"last_seen": last_seen.isoformat(), "silent_s": round(silent_s)})])


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
