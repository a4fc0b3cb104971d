"""`collection`: door-to-door collection checked against the bin lifts trucks report.

Households (an RFID tag on their bin, an address, collection days and a time window, and the service
area the collecting truck must belong to) come from a YAML file in the rules directory and/or from
registered devices of kind `household` (attributes `rfid`, `address`, `collection_days`,
`collection_window`, `service_area`). Three causes, one incident each:

- a household not lifted by any truck within its window, `grace` after the window ends (subject
  `household:<id>`), decided by the periodic sweep in the rule's time zone from the lifts committed (by
  whichever replica received them); a lift after it, even uploaded late, resolves it on a later sweep;
- a lift of a tag no household has (subject `tag:<rfid>`), with `unknown_tag_incident`;
- a lift by a truck whose `service_area` attribute differs from the household's, with
  `wrong_area_incident` (subject `lift:<household>`).

A household first seen by a running gateway is not checked for windows that ended before then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from typing_extensions import TypedDict  # pydantic reads the shape of a typing_extensions TypedDict on 3.11

from gateway.devices import Device, DeviceDirectory
from gateway.events import Finding, Reading
from gateway.organisation.calendar import TimeZoneName
from gateway.rules.durations import Duration
from gateway.rules.model import (
    ContextWith,
    IncidentSpec,
    Outcome,
    RuleBase,
    RuleConfigBase,
    StateOf,
    SweepQuestions,
    SweepWorld,
    Verdict,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Household(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    tag: str
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    service_area: str | None = None
    round: str | None = None  # the collection round it is on (the ledger's coverage); its service area if unset
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = Field(min_length=1)
    window: str = Field(pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$", description="local time, e.g. 06:00-12:00")

    @property
    def window_times(self) -> tuple[time, time]:
        start, end = self.window.split("-")
        return time.fromisoformat(start), time.fromisoformat(end)


class HouseholdSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = None  # relative to the rules directory
    device_kind: str | None = None

    @field_validator("file")
    @classmethod
    def _inside_the_rules(cls, value: str | None) -> str | None:
        # A rule file may come from the rule lab's editor: it names files of the rules directory only.
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError(f"{value!r}: name a file inside the rules directory (e.g. data/households.yaml)")
        return value


class CollectionConfig(RuleConfigBase):
    kind: Literal["collection"]
    households: HouseholdSource
    timezone: TimeZoneName = "UTC"
    grace: Duration = timedelta(minutes=30)
    unknown_tag_incident: IncidentSpec | None = None
    wrong_area_incident: IncidentSpec | None = None

    def build(self, zones: object, directory: Path | None = None) -> CollectionRule:
        listed: list[Household] = []
        if self.households.file:
            if directory is None:
                raise ValueError("households.file needs the rules directory")
            listed = load_households(directory / self.households.file)
        return CollectionRule(self, listed)


def load_households(path: Path) -> list[Household]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"households file {path}: {exc}") from exc
    rows = data.get("households") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError(f"households file {path}: expected a list or a 'households:' key")
    households = []
    for index, row in enumerate(rows):
        try:
            households.append(Household.model_validate(row))
        except ValidationError as exc:
            raise ValueError(f"households file {path}: entry {index + 1}: {exc.errors()[0]['loc']}: "
                             f"{exc.errors()[0]['msg']}") from None
    tags = [h.tag for h in households]
    if len(tags) != len(set(tags)):
        raise ValueError(f"households file {path}: a tag is listed twice")
    return households


def household_from_device(device: Device) -> Household | None:
    a = device.attributes
    try:
        return Household(id=device.device_id, tag=str(a["rfid"]), address=str(a.get("address", device.name or "")),
                         lat=device.lat, lon=device.lon, service_area=a.get("service_area"), round=a.get("round"),
                         days=tuple(a.get("collection_days", ())), window=str(a.get("collection_window", "")))
    except (KeyError, ValidationError):
        return None


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime


class HouseholdState(TypedDict, total=False):
    checked: float  # the end of the last window judged (epoch s); windows before it are not judged again
    missed: bool  # a "missed collection" incident is open
    missed_at: float  # when it opened: the end of the window missed (epoch s)
    window_start: float  # the start of the window missed: a lift from then on resolves it


class CollectionRule(RuleBase):
    kind = "collection"
    sweeps = True
    per_device = False
    reading_events = ("bin_lift",)
    accepts_late = True  # a lift buffered in a dead zone and uploaded after the truck's later fixes
    State = HouseholdState
    state_version = 2

    def __init__(self, config: CollectionConfig, households: list[Household]) -> None:
        super().__init__(config)
        self.collection = config
        self.listed = households
        self.tz = ZoneInfo(config.timezone)
        self.grace = config.grace
        self.by_tag: dict[str, Household] = {h.tag: h for h in households}

    def households(self, devices: Iterable[Device]) -> dict[str, Household]:
        """By tag: the file's households and, when configured, registered household devices."""
        found = {h.tag: h for h in self.listed}
        kind = self.collection.households.device_kind
        if kind:
            for device in devices:
                if device.kind == kind and device.jurisdiction == self.jurisdiction \
                        and (household := household_from_device(device)):
                    found.setdefault(household.tag, household)
        return found

    def devices_changed(self, devices: DeviceDirectory) -> None:
        self.by_tag = self.households(devices)

    def evaluate(self, reading: Reading, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        raise NotImplementedError("collection keeps its state per household: see evaluate_reading")

    def evaluate_reading(self, reading: Reading, context: Mapping[str, Any], state_of: StateOf,
                         now: datetime) -> Verdict:
        """A truck's bin lift of an unknown tag, or outside the truck's area. Whether a household was
        collected is the sweep's to decide, from the lifts committed."""
        if reading.event != "bin_lift" or not reading.rfid:
            return Verdict()
        household = self.by_tag.get(reading.rfid)
        if household is None:
            unknown = self.collection.unknown_tag_incident
            if unknown is None:
                return Verdict()
            return Verdict([self._lift_finding(unknown, f"tag:{reading.rfid}", reading, context, None)])
        wrong = self.collection.wrong_area_incident
        truck_area = (context.get("device") or {}).get("service_area")
        if wrong and truck_area and household.service_area and truck_area != household.service_area:
            return Verdict([self._lift_finding(wrong, f"lift:{household.id}", reading, context, household)])
        return Verdict()

    def upgrade_state(self, version: int, state: dict[str, Any]) -> dict[str, Any]:
        # Version 1 kept the last lift seen in memory; the lifts are now read from what is committed.
        state.pop("lifted", None)
        if state.get("missed") and "window_start" not in state and "missed_at" in state:
            state["window_start"] = state["missed_at"]
        return state

    def sweep_questions(self, now: datetime, devices: DeviceDirectory, state_of: StateOf) -> SweepQuestions:
        """For each household whose window is to be judged, or whose miss is open: its lifts since."""
        asked: dict[str, datetime] = {}
        for household in self.by_tag.values():
            state = state_of(f"household:{household.id}") or {}
            since = None
            if state.get("missed") and isinstance(start := state.get("window_start"), int | float):
                since = datetime.fromtimestamp(start, UTC)
            window = self._last_window(household, now)
            checked = state.get("checked")
            if window is not None and isinstance(checked, int | float) and window.end.timestamp() > checked:
                since = window.start if since is None else min(since, window.start)
            if since is not None:
                asked[household.tag] = since
        return SweepQuestions(lifts_since=asked)

    def sweep(self, now: datetime, world: SweepWorld, state_of: StateOf) -> Verdict:
        """Households whose last window (plus the grace) has ended without a lift in it; and misses that a
        lift since (uploaded late, or the truck came back) resolves."""
        verdict = Verdict()
        for household in self.by_tag.values():
            subject = f"household:{household.id}"
            before = state_of(subject)
            state = dict(before or {})
            lifts = world.lifts.get(household.tag, ())
            context = {"household": household.model_dump(), "device": {}, "window": household.window}
            if state.get("missed"):
                start = state.get("window_start", state.get("missed_at", 0.0))
                after = [lift for lift in lifts if lift[0].timestamp() >= start]
                if after:
                    lifted_at, truck = after[0]
                    opened = state.get("missed_at")
                    # A lift uploaded late may have happened before the window was judged: the incident is
                    # resolved now that it is known, never before it opened.
                    at = max(lifted_at, datetime.fromtimestamp(opened, UTC)) if isinstance(opened, int | float) \
                        else lifted_at
                    verdict.findings.append(self.finding(
                        "resolve", subject, at, context, device_id=truck, lat=household.lat, lon=household.lon,
                        address=household.address, data={"household": household.id, "truck": truck}))
                    for key in ("missed", "missed_at", "window_start"):
                        state.pop(key, None)
            if "checked" not in state:
                state["checked"] = now.timestamp()  # first seen now: earlier windows are not judged
            window = self._last_window(household, now)
            if window is not None and window.end.timestamp() > state["checked"]:
                state["checked"] = window.end.timestamp()
                start_s, end_s = window.start.timestamp(), window.end.timestamp()
                if not any(start_s <= lift[0].timestamp() <= end_s for lift in lifts):
                    state["missed"] = True
                    state.setdefault("missed_at", end_s)
                    state.setdefault("window_start", start_s)
                    verdict.findings.append(self.finding(
                        "open", subject, window.end, {**context, "date": window.start.date().isoformat()},
                        lat=household.lat, lon=household.lon, address=household.address,
                        data={"household": household.id, "tag": household.tag,
                              "window_start": window.start.isoformat(), "window_end": window.end.isoformat()}))
            if state != before:
                verdict.states[subject] = state
        return verdict

    def _last_window(self, household: Household, now: datetime) -> _Window | None:
        """The latest collection window whose end plus the grace period has passed."""
        local_now = (now - self.grace).astimezone(self.tz)
        start_time, end_time = household.window_times
        for back in range(8):
            day: date = local_now.date() - timedelta(days=back)
            if DAYS[day.weekday()] not in household.days:
                continue
            end = datetime.combine(day, end_time, self.tz)
            if end <= local_now:
                return _Window(datetime.combine(day, start_time, self.tz), end)
        return None

    def _lift_finding(self, spec: IncidentSpec, subject: str, reading: Reading, context: Mapping[str, Any],
                      household: Household | None, action: str = "open", at: datetime | None = None) -> Finding:
        full = ContextWith(context, household=household.model_dump() if household else {})
        return self.finding(
            action, subject, at or reading.time, full, spec=spec, device_id=reading.device_id, lat=reading.lat,
            lon=reading.lon, address=household.address if household else None,
            data={"rfid": reading.rfid, **({"household": household.id} if household else {})})
