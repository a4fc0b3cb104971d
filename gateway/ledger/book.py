"""The stops on a collection schedule and the facts the trucks' readings give about each stop and day.

A stop is a household of a `collection` rule (an RFID tag, days and a local window), or a registered
container with the same attributes (`rfid`, `collection_days`, `collection_window`). For each stop and
local day the ledger keeps facts, never a verdict: the first lift of its tag, the first time a truck came
within `pass_m` of it during its window, and the first driver's "bin not out" event for it. The status
is read off the facts at a given time (`status_at`): a lift on a scheduled day is `lifted`; a driver's "bin
not out" is `not_presented` at once, a truck that passed without lifting once the window (and the rule's
grace) has ended; no truck by then is `missed`, and before then `pending`; a lift on another day is
`extra`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from shapely import STRtree, points

from gateway.devices import Device
from gateway.rules.collection import DAYS, CollectionRule, Household
from gateway.rules.loader import RuleSet

Status = Literal["lifted", "not_presented", "missed", "pending", "extra"]
STATUSES: tuple[Status, ...] = ("lifted", "not_presented", "missed", "pending", "extra")
NOT_OUT_EVENT = "bin_not_out"  # a driver's button: the bin was not put out
_METRES_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Stop:
    id: str
    tag: str
    kind: Literal["household", "container"]
    address: str
    lat: float | None
    lon: float | None
    district: str
    round: str
    days: tuple[str, ...]
    window: tuple[time, time]
    tz: ZoneInfo
    grace: timedelta
    jurisdiction: str = ""

    def scheduled_on(self, day: date) -> bool:
        return DAYS[day.weekday()] in self.days

    def window_on(self, day: date) -> tuple[datetime, datetime]:
        return datetime.combine(day, self.window[0], self.tz), datetime.combine(day, self.window[1], self.tz)

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()


@dataclass(frozen=True)
class Seen:
    """One truck's observation: when, which truck, where (and how heavy, for a lift)."""

    at: datetime
    truck: str
    lat: float | None = None
    lon: float | None = None
    weight_kg: float | None = None

    def earlier_than(self, other: Seen | None) -> bool:
        return other is None or (self.at, self.truck) < (other.at, other.truck)


@dataclass
class Facts:
    stop_id: str
    day: date
    scheduled: bool
    lift: Seen | None = None
    passed: Seen | None = None
    not_out: Seen | None = None

    def merge(self, other: Facts) -> bool:
        """Earliest wins, field by field: the same facts in any order, any number of times, give the same.
        Whether anything changed."""
        changed = False
        for name in ("lift", "passed", "not_out"):
            theirs = getattr(other, name)
            if theirs is not None and theirs.earlier_than(getattr(self, name)):
                setattr(self, name, theirs)
                changed = True
        return changed

    def status_at(self, stop: Stop, now: datetime) -> Status:
        if not self.scheduled:
            return "extra"
        if self.lift is not None:
            return "lifted"
        if self.not_out is not None:
            return "not_presented"
        _, end = stop.window_on(self.day)
        if now < end + stop.grace:
            return "pending"  # a truck that went by may still come back for it, until the window ends
        return "not_presented" if self.passed is not None else "missed"


@dataclass(frozen=True)
class TruckReading:
    """What the ledger reads of a stored reading."""

    device_id: str
    time: datetime
    lat: float | None
    lon: float | None
    rfid: str | None = None
    event: str | None = None
    weight_kg: float | None = None


@dataclass
class Book:
    """The stops of one municipality, indexed by tag and by place."""

    stops: tuple[Stop, ...]
    pass_m: float = 30.0
    jurisdiction: str = ""
    by_id: dict[str, Stop] = field(init=False)
    by_tag: dict[str, Stop] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.stops}
        self.by_tag = {s.tag: s for s in self.stops}
        self._placed = [s for s in self.stops if s.lat is not None and s.lon is not None]
        self._lat0 = math.radians(sum(s.lat or 0.0 for s in self._placed) / len(self._placed)) if self._placed else 0.0
        self._tree = STRtree(points(self._xy([(s.lon or 0.0, s.lat or 0.0) for s in self._placed]))) \
            if self._placed else None

    def _xy(self, lon_lat: list[tuple[float, float]]) -> np.ndarray[Any, Any]:
        """Metres on a local plane: exact enough over a city for a distance of tens of metres."""
        array = np.asarray(lon_lat, dtype=float).reshape(-1, 2)
        return np.column_stack((array[:, 0] * math.cos(self._lat0) * _METRES_PER_DEGREE,
                                array[:, 1] * _METRES_PER_DEGREE))

    def near(self, readings: list[TruckReading]) -> Iterator[tuple[TruckReading, Stop]]:
        """Each (reading, stop) pair within `pass_m` of each other."""
        placed = [r for r in readings if r.lat is not None and r.lon is not None]
        if self._tree is None or not placed:
            return
        where = points(self._xy([(r.lon or 0.0, r.lat or 0.0) for r in placed]))
        hits = self._tree.query(where, predicate="dwithin", distance=self.pass_m)
        for reading_index, stop_index in zip(hits[0], hits[1], strict=True):
            yield placed[int(reading_index)], self._placed[int(stop_index)]

    def fold(self, readings: Iterable[TruckReading],
             days: tuple[date, date] | None = None) -> dict[tuple[str, date], Facts]:
        """The facts the readings give, per (stop, local day); only days in [first, last] when `days` is
        given (a rebuild of some days)."""
        found: dict[tuple[str, date], Facts] = {}

        def note(stop: Stop, day: date, what: str, seen: Seen) -> None:
            if days is not None and not days[0] <= day <= days[1]:
                return
            key = (stop.id, day)
            facts = found.get(key)
            if facts is None:
                facts = found[key] = Facts(stop.id, day, stop.scheduled_on(day))
            if what == "passed" and not facts.scheduled:
                return
            if seen.earlier_than(getattr(facts, what)):
                setattr(facts, what, seen)

        moving: list[TruckReading] = []
        for reading in readings:
            if reading.event == "bin_lift" and reading.rfid:
                if (stop := self.by_tag.get(reading.rfid)) is not None:
                    note(stop, stop.local_day(reading.time), "lift",
                         Seen(reading.time, reading.device_id, reading.lat, reading.lon, reading.weight_kg))
                continue
            if reading.event == NOT_OUT_EVENT and reading.rfid and (stop := self.by_tag.get(reading.rfid)):
                note(stop, stop.local_day(reading.time), "not_out",
                     Seen(reading.time, reading.device_id, reading.lat, reading.lon))
                continue
            moving.append(reading)
        for reading, stop in self.near(moving):
            day = stop.local_day(reading.time)
            if not stop.scheduled_on(day):
                continue
            start, end = stop.window_on(day)
            if not start <= reading.time <= end:
                continue
            what = "not_out" if reading.event == NOT_OUT_EVENT else "passed"
            note(stop, day, what, Seen(reading.time, reading.device_id, reading.lat, reading.lon))
        return found

    def due_on(self, day: date) -> list[Stop]:
        return [s for s in self.stops if s.scheduled_on(day)]


def merge_into(known: dict[tuple[str, date], Facts], new: Mapping[tuple[str, date], Facts]) -> set[tuple[str, date]]:
    """Merges `new` into `known`; the keys whose facts changed."""
    changed = set()
    for key, facts in new.items():
        before = known.get(key)
        if before is None:
            known[key] = replace(facts)
            changed.add(key)
        elif before.merge(facts):
            changed.add(key)
    return changed


def stop_of_household(household: Household, rule: CollectionRule) -> Stop:
    district = household.service_area or ""
    return Stop(household.id, household.tag, "household", household.address, household.lat, household.lon,
                district, household.round or district, household.days, household.window_times, rule.tz,
                rule.grace, rule.jurisdiction)


def stop_of_container(device: Device, rule: CollectionRule) -> Stop | None:
    """A registered container with a tag, collection days and a window is on the schedule too."""
    a = device.attributes
    days = tuple(a.get("collection_days") or ())
    window = str(a.get("collection_window") or "")
    if device.kind != "container" or not a.get("rfid") or not days or "-" not in window:
        return None
    try:
        start, end = (time.fromisoformat(part) for part in window.split("-"))
    except ValueError:
        return None
    district = str(a.get("service_area") or "")
    return Stop(device.device_id, str(a["rfid"]), "container", device.name or device.device_id, device.lat, device.lon,
                district, str(a.get("round") or district), days, (start, end), rule.tz, rule.grace, rule.jurisdiction)


def books_of(rules: RuleSet, devices: Iterable[Device], pass_m: float) -> dict[str, Book]:
    """Per municipality, its collection rules' households and its scheduled containers."""
    devices = list(devices)
    found: dict[str, dict[str, Stop]] = {}
    for rule in rules.rules:
        if not isinstance(rule, CollectionRule):
            continue
        stops = found.setdefault(rule.jurisdiction, {})
        for household in rule.households(devices).values():
            stops.setdefault(household.id, stop_of_household(household, rule))
        for device in devices:
            if device.jurisdiction == rule.jurisdiction and (stop := stop_of_container(device, rule)):
                stops.setdefault(stop.id, stop)
    return {jurisdiction: Book(tuple(sorted(stops.values(), key=lambda s: s.id)), pass_m, jurisdiction)
            for jurisdiction, stops in found.items()}
