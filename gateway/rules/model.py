"""What every rule has, whatever its kind: an id, what it applies to, and the incident it produces."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gateway.devices import Device, DeviceDirectory
from gateway.events import CANONICAL_FIELDS, Finding, Reading
from gateway.organisation.calendar import WorkingTime
from gateway.rules.durations import Duration
from gateway.rules.expressions import Condition
from gateway.rules.templates import render

Severity = Literal["info", "minor", "major", "critical"]
# The names a condition may use: the reading's canonical fields, `extra`, `device`, and (geofence) `zone`.
READING_VARIABLES = frozenset({*CANONICAL_FIELDS, "extra", "device"})
DEVICE_VARIABLES = frozenset({"device"})


class AppliesTo(BaseModel):
    """Which devices a rule watches; every given criterion must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    where: str | None = Field(default=None, description="CEL over `device` (its attributes, kind, profile…)")


class IncidentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service_code: str = Field(min_length=1)
    severity: Severity = "minor"
    title: str = Field(min_length=1)
    description: str = ""
    auto_resolve: bool = True
    # After a resolution, the same cause may not open a new incident before this has passed.
    cooldown: Duration = timedelta(0)
    # Overrides of the service's routing (services.yaml): the organisation, priority and deadlines.
    organisation: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    respond_within: WorkingTime | None = None
    resolve_within: WorkingTime | None = None

    def handling(self) -> dict[str, Any]:
        return {key: value for key in ("organisation", "priority", "respond_within", "resolve_within")
                if (value := getattr(self, key)) is not None}


class RuleConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    enabled: bool = True
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    incident: IncidentSpec

    def build(self, zones: Any, directory: Any = None) -> RuleBase:
        """The rule of this kind, given the zone layers and the rules directory."""
        raise NotImplementedError


def device_context(device: Device | None, device_id: str) -> dict[str, Any]:
    if device is None:
        return {"id": device_id}
    return {**device.attributes, "id": device.device_id, "kind": device.kind, "profile": device.profile,
            "name": device.name or device.device_id, "lat": device.lat, "lon": device.lon}


class ReadingContext(Mapping[str, Any]):
    """What conditions and templates see of a reading: its canonical fields, `extra`, `device`,
    `device_id` and `time`. Values are read from the reading (and the device) when asked for: a condition
    uses one or two of them, and building all of them for every reading and rule cost more than
    evaluating the rules."""

    __slots__ = ("_device", "_device_context", "_extra", "_reading")
    _KEYS = (*CANONICAL_FIELDS, "extra", "device", "device_id", "time")
    _FIELDS = frozenset(CANONICAL_FIELDS)
    _NAMES = frozenset(_KEYS)

    def __init__(self, reading: Reading, device: Device | Mapping[str, Any] | None) -> None:
        self._reading = reading
        self._extra: dict[str, Any] | None = None
        if device is None or isinstance(device, Device):
            self._device, self._device_context = device, None
        else:
            self._device, self._device_context = None, device

    @property
    def device(self) -> Mapping[str, Any]:
        if self._device_context is None:
            self._device_context = device_context(self._device, self._reading.device_id)
        return self._device_context

    def __getitem__(self, name: str) -> Any:
        if name in self._FIELDS:
            return getattr(self._reading, name)
        if name == "device":
            return self.device
        if name == "extra":
            if self._extra is None:
                self._extra = dict(self._reading.extra)
            return self._extra
        if name == "device_id":
            return self._reading.device_id
        if name == "time":
            return self._reading.time.isoformat()
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        # Conditions read their variables through here: the common case first, without an exception.
        if name in self._FIELDS:
            return getattr(self._reading, name)
        if name in self._NAMES:
            return self[name]
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


class ContextWith(Mapping[str, Any]):
    """A context plus a few more names (a geofence's `zone`), without copying the context."""

    __slots__ = ("_base", "_more")

    def __init__(self, base: Mapping[str, Any], **more: Any) -> None:
        self._base = base
        self._more = more

    def __getitem__(self, name: str) -> Any:
        if name in self._more:
            return self._more[name]
        return self._base[name]

    def get(self, name: str, default: Any = None) -> Any:
        # Conditions read their variables through here (a geofence's on every fix): no exception path.
        more = self._more
        if name in more:
            return more[name]
        return self._base.get(name, default)

    def __iter__(self) -> Iterator[str]:
        yield from self._more
        yield from (name for name in self._base if name not in self._more)

    def __len__(self) -> int:
        return len(self._more.keys() | self._base.keys())


def reading_context(reading: Reading, device: Device | Mapping[str, Any] | None) -> ReadingContext:
    """`device` is the device record, or the context `device_context` made of it."""
    return ReadingContext(reading, device)


log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """A rule's answer to one reading of a device: its new state for that device (None: forget it) and
    what it found."""

    state: Mapping[str, Any] | None
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class Verdict:
    """What the engine gets back from a rule: findings, and the new state of each subject that changed
    (None: forget it). A subject is the device for most kinds, a household for collection."""

    findings: list[Finding] = field(default_factory=list)
    states: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)


# A rule's view of its own states: subject → state, or None.
StateOf = Callable[[str], Mapping[str, Any] | None]


Lift = tuple[datetime, str]  # a bin lift: when (device time), by which truck


@dataclass(frozen=True, slots=True)
class SweepQuestions:
    """What a sweep needs to know of the readings beyond each device's latest: asked, before it runs, of
    what is committed (whichever replica received them), or of the engine's memory in a backtest."""

    readings_after: Mapping[str, datetime] = field(default_factory=dict)  # device → its first reading after
    lifts_since: Mapping[str, datetime] = field(default_factory=dict)  # RFID tag → its bin lifts since

    def __or__(self, other: SweepQuestions) -> SweepQuestions:
        return SweepQuestions(_earliest(self.readings_after, other.readings_after),
                              _earliest(self.lifts_since, other.lifts_since))


def _earliest(a: Mapping[str, datetime], b: Mapping[str, datetime]) -> dict[str, datetime]:
    merged = dict(a)
    for key, value in b.items():
        if key not in merged or value < merged[key]:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class SweepWorld:
    """What a periodic sweep may look at besides the rule's states: facts about the readings, the same
    whichever replica received them."""

    devices: DeviceDirectory
    last_seen: Mapping[str, datetime]  # device time of each device's latest reading
    profile_intervals: Mapping[str, float | None]  # the profiles' expected reporting intervals
    # the answers to the rules' SweepQuestions
    first_reading_after: Mapping[str, datetime] = field(default_factory=dict)  # device → device time
    lifts: Mapping[str, Sequence[Lift]] = field(default_factory=dict)  # tag → its lifts since asked, in order


class RuleBase:
    """The contract of a rule kind, and the parts every kind shares: selection of devices, the typed and
    versioned state, and turning a decision into a Finding.

    A kind is one module with a config model (a `kind` tag and `build`) listed in `gateway/rules/__init__`,
    and a subclass of this that implements `evaluate` (per reading, the device being the subject) or, when
    its subjects are not devices, `evaluate_reading`; kinds that act on time passing (silence, a window
    ending) set `sweeps` and implement `sweep`. The engine knows nothing else of them.

    State: a kind declares the shape of its per-subject state (`State`, a TypedDict) and its
    `state_version`. What is stored carries the version; `upgrade_state` turns an older stored shape into
    the current one, so rule state survives upgrades as well as restarts.
    """

    kind: str = ""
    # Whether the rule also runs on the periodic sweep (absence, collection), not only on readings.
    sweeps = False
    # Whether the rule is evaluated on each reading at all: a kind decided on the sweep alone, from what is
    # committed (absence), is not, so no replica's partial view of the readings can mislead it.
    evaluates_readings: ClassVar[bool] = True
    # Whether the rule wants `prepare` called with each batch's readings of the devices it applies to.
    prepares = False
    # Whether every subject is the device a reading came from (or a part of it, a device's zone): then
    # the rule can run on each device's readings apart from the others' (a backtest split over
    # processes). Collection's subjects are households, lifted by any truck.
    per_device: ClassVar[bool] = True
    # The events (`event`) of the only readings the kind looks at, when it looks at so few: a backtest
    # reads just those for it.
    reading_events: ClassVar[tuple[str, ...] | None] = None
    # Whether a reading older than the last one evaluated for its device is still evaluated: for kinds
    # whose decisions do not depend on a device's readings coming in order (a lift is a lift).
    accepts_late: ClassVar[bool] = False
    State: ClassVar[Any] = dict
    state_version: ClassVar[int] = 1
    _state_adapters: ClassVar[dict[type, TypeAdapter[Any]]] = {}

    # The municipality whose rule files it came from ('' on a single-city install): it applies only to that
    # jurisdiction's devices. Set by the loader, which also prefixes the id with it.
    jurisdiction: str = ""

    def __init__(self, config: RuleConfigBase) -> None:
        self.id = config.id
        self.config = config
        self.incident = config.incident
        applies = config.applies_to
        self._where = Condition(applies.where, DEVICE_VARIABLES) if applies.where else None

    def applies_to(self, device: Device | None, device_id: str, profile: str) -> bool:
        applies = self.config.applies_to
        kind = device.kind if device else None
        if (device.jurisdiction if device else "") != self.jurisdiction:
            return False
        if applies.profiles and profile not in applies.profiles:
            return False
        if applies.kinds and kind not in applies.kinds:
            return False
        if applies.devices and device_id not in applies.devices:
            return False
        if self._where is not None:
            return bool(self._where.evaluate({"device": device_context(device, device_id)}))
        return True

    # -- the contract -------------------------------------------------------------------------------

    def evaluate_reading(self, reading: Reading, context: Mapping[str, Any], state_of: StateOf,
                         now: datetime) -> Verdict:
        """One reading of a device the rule applies to; by default the device is the one subject."""
        before = state_of(reading.device_id)
        outcome = self.evaluate(reading, context, before, now)
        if outcome.state is before or outcome.state == before:
            return Verdict(outcome.findings)
        return Verdict(outcome.findings, {reading.device_id: outcome.state})

    def sweep(self, now: datetime, world: SweepWorld, state_of: StateOf) -> Verdict:
        """With `sweeps`: called periodically on the injected clock, by one replica at a time (the holder
        of the sweep lease), with what its `sweep_questions` asked answered in `world`."""
        return Verdict()

    def sweep_questions(self, now: datetime, devices: DeviceDirectory, state_of: StateOf) -> SweepQuestions:
        """With `sweeps`: what the sweep at `now` will need to know of the readings beyond the latest of
        each device."""
        return SweepQuestions()

    def devices_changed(self, devices: DeviceDirectory) -> None:
        """Called before evaluating when the device registry changed, for what a rule derives from it."""

    def dump_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        return {"v": self.state_version, "s": dict(state)}

    def load_state(self, stored: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The state in `stored` (as `dump_state` wrote it, in this or an earlier version), checked
        against `State`; None, logged, when it cannot be read (the subject starts afresh)."""
        version = stored.get("v", 0)  # before versions were written: version 0
        state = stored.get("s")
        if not isinstance(version, int) or version > self.state_version or not isinstance(state, dict):
            log.warning("rule %s: stored state of version %r not understood, starting afresh", self.id, version)
            return None
        try:
            upgraded = self.upgrade_state(version, state)
            adapter = self._state_adapters.get(self.State)
            if adapter is None:
                adapter = self._state_adapters[self.State] = TypeAdapter(self.State)
            return adapter.validate_python(upgraded)  # type: ignore[no-any-return]
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            log.warning("rule %s: stored state not understood (%s), starting afresh", self.id, exc)
            return None

    def upgrade_state(self, version: int, state: dict[str, Any]) -> dict[str, Any]:
        """A stored state of an earlier `version` in the current shape. Version 0 (no version stored) is
        the shape version 1 has, for every kind."""
        return state

    def prepare(self, readings: Sequence[Reading]) -> None:
        """With `prepares`, called with a batch's readings of the devices the rule applies to, before they
        are evaluated one by one: the rule may look up what it needs for all of them at once (geofence:
        the zones of every position)."""

    def evaluate(self, reading: Reading, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        raise NotImplementedError

    def finding(self, action: str, subject: str, time: datetime, context: Mapping[str, Any], *,
                severity: str | None = None, device_id: str | None = None, lat: float | None = None,
                lon: float | None = None, data: Mapping[str, Any] | None = None, spec: IncidentSpec | None = None,
                address: str | None = None) -> Finding:
        """Every Finding is built here: the incident spec's templates rendered over `context`, the place
        from the arguments, else the reading, else the device."""
        spec = spec or self.incident
        device = context.get("device") or {}
        if lat is None or lon is None:
            lat, lon = context.get("lat"), context.get("lon")
        if lat is None or lon is None:
            lat, lon = device.get("lat"), device.get("lon")
        return Finding(
            rule_id=self.id, subject=subject, action=action, time=time, service_code=spec.service_code,
            severity=severity or spec.severity, title=render(spec.title, context),
            description=render(spec.description, context), device_id=device_id or device.get("id"),
            lat=lat, lon=lon, address=address if address is not None else device.get("address"),
            data=dict(data or {}), handling=spec.handling(), jurisdiction=self.jurisdiction,
        )


def epoch(time: datetime) -> float:
    return time.timestamp()


def since(state: Mapping[str, Any] | None, key: str) -> float | None:
    value = (state or {}).get(key)
    return float(value) if isinstance(value, int | float) else None


def cooling_down(state: Mapping[str, Any] | None, cooldown: timedelta, now_s: float) -> bool:
    resolved_at = since(state, "resolved_at")
    return resolved_at is not None and now_s - resolved_at < cooldown.total_seconds()
