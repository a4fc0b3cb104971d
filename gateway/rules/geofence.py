"""`geofence`: positions against zones, with minimum inside/outside durations so GPS jitter at a boundary
does not flap.

Modes: `enter` and `exit` (a confirmed crossing opens an incident per device and zone), `inside` (open
while the device is confirmed inside a zone and the optional `condition` has held `condition_for`, e.g.
overspeed in school zones), `outside` (open while confirmed outside every selected zone, e.g. a truck
outside its service area), `dwell` (inside one zone longer than `dwell`).

A crossing is confirmed when the new side has been seen continuously for `min_inside` / `min_outside`
(device time). A device first seen inside a zone is inside, but has not "entered" it. Positions flagged
`position_inaccurate` are ignored.

State per device (`GeofenceState`, version 2): `z` = per zone (or `*` for "any zone" in outside mode)
the confirmed side `in`, a pending side `cand` since `cs`, `entered` (when the inside was confirmed) and
`crossed` (the first fix of that inside: the crossing's own time, which incidents record beside the time
it was confirmed); `on` = per incident subject, whether it is open, and `cond` the time a condition
started holding; `resolved` = when each subject was last resolved. Version 1 had no `crossed`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic reads the shape of a typing_extensions TypedDict on 3.11

from gateway.events import Reading
from gateway.rules.durations import Duration
from gateway.rules.expressions import Condition
from gateway.rules.model import READING_VARIABLES, ContextWith, Outcome, RuleBase, RuleConfigBase
from gateway.rules.zones import Zone, ZoneIndex

ANY_ZONE = "*"
_CONFIRMED_OUTSIDE = {"in": False}


class ZoneSelection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: tuple[str, ...] = Field(min_length=1, description="file stems of rules/zones/*.geojson")
    # CEL over `zone` and `device`: which of the layers' zones count for a device (e.g. its own area).
    where: str | None = None


class GeofenceConfig(RuleConfigBase):
    kind: Literal["geofence"]
    mode: Literal["enter", "exit", "inside", "outside", "dwell"]
    zones: ZoneSelection
    min_inside: Duration = timedelta(0)
    min_outside: Duration = timedelta(0)
    condition: str | None = None
    condition_for: Duration = timedelta(0)
    dwell: Duration | None = None

    @model_validator(mode="after")
    def _mode_parameters(self) -> GeofenceConfig:
        if (self.mode == "dwell") != (self.dwell is not None):
            raise ValueError("`dwell` is required by mode dwell and only used by it")
        return self

    def build(self, zones: Mapping[str, list[Zone]], directory: object = None) -> GeofenceRule:
        missing = [layer for layer in self.zones.layers if layer not in zones]
        if missing:
            raise ValueError(f"zone layer(s) {', '.join(missing)} not found in rules/zones/ "
                             f"(have: {', '.join(sorted(zones)) or 'none'})")
        return GeofenceRule(self, [zone for layer in self.zones.layers for zone in zones[layer]])


# `in` is a keyword: only the functional form of TypedDict can name it
ZoneSide = TypedDict("ZoneSide", {"in": bool | None, "cand": bool, "cs": float, "entered": float,
                                  "crossed": float}, total=False)


class GeofenceState(TypedDict, total=False):
    z: dict[str, ZoneSide]
    on: dict[str, bool]
    cond: dict[str, float]
    resolved: dict[str, float]
    seen: bool


class GeofenceRule(RuleBase):
    kind = "geofence"
    prepares = True
    State = GeofenceState
    state_version = 2

    def upgrade_state(self, version: int, state: dict[str, Any]) -> dict[str, Any]:
        if version < 2:  # the crossing's own time was not kept: the confirmation time is the best known
            for side in state.get("z", {}).values():
                if "entered" in side and "crossed" not in side:
                    side["crossed"] = side["entered"]
        return state

    def __init__(self, config: GeofenceConfig, zones: list[Zone]) -> None:
        super().__init__(config)
        self.mode = config.mode
        self.index = ZoneIndex(zones)
        self.min_in = config.min_inside.total_seconds()
        self.min_out = config.min_outside.total_seconds()
        self.condition = Condition(config.condition, READING_VARIABLES | {"zone"}) if config.condition else None
        self.condition_for = config.condition_for.total_seconds()
        self.dwell_s = config.dwell.total_seconds() if config.dwell else 0.0
        self.zone_filter = (Condition(config.zones.where, frozenset({"zone", "device"}))
                            if config.zones.where else None)
        self._allowed: dict[str, tuple[Mapping[str, Any], frozenset[str]]] = {}
        # A filter that reads the device only as `device.<attribute>` gives the same zones to every device
        # with the same values of those attributes (a fleet has a few service areas, not a zone set per
        # truck): worked out once per value, at about 0.1 ms a zone for the city's districts.
        self._filter_fields = _device_fields(config.zones.where) if config.zones.where else None
        self._allowed_by_value: dict[tuple[Any, ...], frozenset[str]] = {}
        self._all_zones = frozenset(self.index.by_id)

    def prepare(self, readings: Sequence[Reading]) -> None:
        self.index.prefetch({(r.lon, r.lat) for r in readings if r.lat is not None and r.lon is not None})

    def evaluate(self, reading: Reading, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        if reading.lat is None or reading.lon is None or reading.extra.get("position_inaccurate"):
            return Outcome(state)
        t = reading.time.timestamp()
        allowed = self._zones_for(context)
        inside = {z.id for z in self.index.containing(reading.lon, reading.lat) if z.id in allowed}
        if self.mode == "outside":
            if state is not None and state.get("seen") and self._outside_unchanged(state, bool(inside), t,
                                                                                   reading.device_id, context):
                return Outcome(state)  # on the side it was, or still pending: nothing changes (the common case)
        elif not inside and state is not None and state.get("seen") and not state.get("z"):
            return Outcome(state)  # far from every zone, as before: nothing can change (the common case)
        current = _copy(state)
        sides: dict[str, dict[str, Any]] = current["z"]
        keys = [ANY_ZONE] if self.mode == "outside" else sorted(inside | set(sides))
        crossings = []
        # Zones a device has been seen outside of start "outside"; on its very first fix, "unknown", so
        # a device first seen inside a zone has not entered it.
        first_fix = not current["seen"]
        current["seen"] = True
        for key in keys:
            raw = bool(inside) if key == ANY_ZONE else key in inside
            entry = sides.setdefault(key, {"in": None if first_fix or key == ANY_ZONE else False})
            before = entry.get("in")
            if before == raw:
                entry.pop("cand", None)
                entry.pop("cs", None)
            else:
                if entry.get("cand") != raw:
                    entry["cand"], entry["cs"] = raw, t
                if t - entry["cs"] >= (self.min_in if raw else self.min_out):
                    crossed = entry["cs"]
                    entry["in"] = raw
                    entry.pop("cand", None)
                    entry.pop("cs", None)
                    if raw:
                        entry["entered"] = t
                        entry["crossed"] = crossed
                    else:
                        entry.pop("entered", None)
                        if self.mode == "outside":  # its incidents are about the outside
                            entry["crossed"] = crossed
                        else:  # the side forgotten below, once nothing is pending or open
                            entry.pop("crossed", None)
                    crossings.append((key, before, raw, crossed))
        findings = self._decide(reading, context, current, crossings, t)
        # Forget zones the device is confirmed outside of, with nothing pending or open: the state stays
        # the size of what the device is near, not of the zone set.
        if self.mode != "outside":
            for key in [k for k, e in sides.items() if e == _CONFIRMED_OUTSIDE
                        and f"{reading.device_id}:{k}" not in current["on"]]:
                del sides[key]
        return Outcome(current, findings)

    def _outside_unchanged(self, state: Mapping[str, Any], raw: bool, t: float, device_id: str,
                           context: Mapping[str, Any]) -> bool:
        """Outside mode: whether this fix leaves the state as it is, which is what the full evaluation
        below would find, without copying the state to find it: the side stays confirmed (or a pending
        one is not confirmed yet), and the incident neither opens nor resolves."""
        entry = state.get("z", {}).get(ANY_ZONE)
        if entry is None:
            return False
        confirmed = entry.get("in")
        if confirmed == raw:
            if "cand" in entry or "cs" in entry:
                return False  # a pending side to drop
        elif entry.get("cand") != raw or t - entry["cs"] >= (self.min_in if raw else self.min_out):
            return False  # a side starts pending, or is confirmed
        if confirmed is None:
            return True
        quiet = device_id not in state.get("cond", {}) and device_id not in state.get("on", {})
        if confirmed is True:
            return quiet  # inside: nothing to resolve
        holds = self._holds(context, None)  # outside: the condition decides
        return holds is None or (holds is False and quiet)

    def _decide(self, reading: Reading, context: Mapping[str, Any], state: dict[str, Any],
                crossings: list[tuple[str, bool | None, bool, float]], t: float) -> list[Any]:
        findings = []
        device_id = reading.device_id
        sides = state["z"]
        if self.mode == "outside":
            # e.g. out of its service area; with a condition, e.g. idling (no `zone` in that condition)
            confirmed = sides[ANY_ZONE].get("in")
            if confirmed is True:
                # A condition counts while outside only: back inside, its clock starts again.
                state["cond"].pop(device_id, None)
                findings += self._resolve(device_id, reading, context, state, t)
            elif confirmed is False:
                findings += self._while_condition(device_id, reading, context, state, t, None,
                                                  sides[ANY_ZONE].get("crossed"))
            return findings
        for key, before, after, crossed in crossings:
            zone = self.index.by_id.get(key)
            subject = f"{device_id}:{key}"
            entered = before is False and after
            left = before is True and not after
            if left:
                state["cond"].pop(subject, None)  # a condition counts while inside only
            if (self.mode == "enter" and entered and self._holds(context, zone) is not False) or (
                    self.mode == "exit" and left):
                findings += self._open(subject, reading, context, state, t, zone, crossed)
            elif after == (self.mode == "exit"):
                # back to the side where the cause does not hold: out of the zone, or (exit) in again
                findings += self._resolve(subject, reading, context, state, t, zone)
        if self.mode in ("inside", "dwell"):
            for key, entry in sides.items():
                if not entry.get("in"):
                    continue
                zone = self.index.by_id.get(key)
                subject = f"{device_id}:{key}"
                if self.mode == "dwell":
                    if t - entry.get("entered", t) >= self.dwell_s:
                        findings += self._open(subject, reading, context, state, t, zone, entry.get("crossed"))
                    continue
                findings += self._while_condition(subject, reading, context, state, t, zone, entry.get("crossed"))
        return findings

    def _while_condition(self, subject: str, reading: Reading, context: Mapping[str, Any], state: dict[str, Any],
                         t: float, zone: Zone | None, crossed: float | None = None) -> list[Any]:
        """Open once the condition has held `condition_for`; resolve when it stops holding."""
        holds = self._holds(context, zone)
        if holds is None:
            return []
        conditions = state["cond"]
        if holds:
            started = conditions.setdefault(subject, t)
            if t - started >= self.condition_for:
                return self._open(subject, reading, context, state, t, zone, crossed)
            return []
        conditions.pop(subject, None)
        return self._resolve(subject, reading, context, state, t, zone)

    def _holds(self, context: Mapping[str, Any], zone: Zone | None) -> bool | None:
        if self.condition is None:
            return True
        return self.condition.evaluate(ContextWith(context, zone=zone.context() if zone else {}))

    def _open(self, subject: str, reading: Reading, context: Mapping[str, Any], state: dict[str, Any], t: float,
              zone: Zone | None, crossed: float | None = None) -> list[Any]:
        if subject in state["on"]:
            return []
        resolved_at = state["resolved"].get(subject)
        if resolved_at is not None and t - resolved_at < self.incident.cooldown.total_seconds():
            return []
        state["on"][subject] = True
        return [self._finding("open", subject, reading, context, zone, crossed)]

    def _resolve(self, subject: str, reading: Reading, context: Mapping[str, Any], state: dict[str, Any], t: float,
                 zone: Zone | None = None) -> list[Any]:
        if state["on"].pop(subject, None) is None:
            return []
        state["cond"].pop(subject, None)
        state["resolved"][subject] = t
        if not self.incident.auto_resolve:
            return []
        return [self._finding("resolve", subject, reading, context, zone)]

    def _finding(self, action: str, subject: str, reading: Reading, context: Mapping[str, Any],
                 zone: Zone | None, crossed: float | None = None) -> Any:
        full = ContextWith(context, zone=zone.context() if zone else {})
        data: dict[str, Any] = {"zone": zone.id, "zone_name": zone.name} if zone else {}
        if crossed is not None:
            # the first fix on the new side; the finding's time is when that side was confirmed
            data["crossed_at"] = datetime.fromtimestamp(crossed, UTC).isoformat()
        if reading.speed_kmh is not None:
            data["speed_kmh"] = reading.speed_kmh
        return self.finding(action, subject, reading.time, full, device_id=reading.device_id,
                            lat=reading.lat, lon=reading.lon, data=data)

    def _zones_for(self, context: Mapping[str, Any]) -> frozenset[str]:
        if self.zone_filter is None:
            return self._all_zones
        device = context["device"]
        if self._filter_fields is not None:
            key = tuple([device.get(name, _ABSENT) for name in self._filter_fields])
            try:
                by_value = self._allowed_by_value.get(key)
            except TypeError:  # an attribute that is a list or a mapping: per device, below
                pass
            else:
                if by_value is None:
                    by_value = self._allowed_by_value[key] = self._filter_zones(device)
                return by_value
        device_id = str(device.get("id"))
        cached = self._allowed.get(device_id)
        if cached is not None and (cached[0] is device or cached[0] == device):
            return cached[1]
        allowed = self._filter_zones(device)
        self._allowed[device_id] = (device, allowed)
        return allowed

    def _filter_zones(self, device: Mapping[str, Any]) -> frozenset[str]:
        assert self.zone_filter is not None
        return frozenset(z.id for z in self.index.zones
                         if self.zone_filter.evaluate({"zone": z.context(), "device": device}))


_ABSENT = object()  # an attribute the device does not have, as told apart from one that is null
_DEVICE = re.compile(r"(?<![\w.])device(?!\w)")
_ATTRIBUTE = re.compile(r"\s*\.\s*([A-Za-z_]\w*)")


def _device_fields(source: str) -> tuple[str, ...] | None:
    """The attributes of `device` a zone filter reads, when it reads the device in no other way than
    `device.<attribute>`; None otherwise (`device[...]`, the whole device, or the word elsewhere)."""
    names = set()
    for found in _DEVICE.finditer(source):
        attribute = _ATTRIBUTE.match(source, found.end())
        if attribute is None:
            return None
        names.add(attribute.group(1))
    return tuple(sorted(names))


def _copy(state: Mapping[str, Any] | None) -> dict[str, Any]:
    state = state or {}
    return {
        "z": {key: dict(entry) for key, entry in state.get("z", {}).items()},
        "on": dict(state.get("on", {})),
        "cond": dict(state.get("cond", {})),
        "resolved": dict(state.get("resolved", {})),
        "seen": bool(state.get("seen")),
    }
