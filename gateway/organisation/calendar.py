"""Working time: the hours of each weekday and the holidays (`calendar.yaml`, holidays in a file), and
deadlines counted on them.

A deadline is written as working time: `4h` is four working hours (Friday 14:00 + 4h with 08:00–15:00
hours is Monday 11:00), `2d` two working days (the same time of day on the second working day after),
`1d4h` both. Without a calendar file the week is Monday to Friday, 08:00–15:00, in UTC.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WORKING = re.compile(r"^(?:(\d+)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+)m)?$")
_INTERVAL = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_OFFICE_HOURS: tuple[tuple[time, time], ...] = ((time(8), time(15)),)
MAX_DAYS_AHEAD = 3660  # a calendar without a working day in ten years is refused, not looped over


class CalendarError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class WorkingDuration:
    days: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        hours, rest = divmod(int(self.seconds), 3600)
        parts = (f"{self.days}d" if self.days else "", f"{hours}h" if hours else "", f"{rest // 60}m" if rest else "")
        return "".join(parts) or "0h"


def parse_working_duration(value: Any) -> WorkingDuration:
    if isinstance(value, WorkingDuration):
        return value
    text = str(value).strip().lower().replace(" ", "") if isinstance(value, str) else ""
    match = _WORKING.match(text) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"not a working time: {value!r} (write e.g. 4h, 2d, 1d4h, 30m)")
    days, hours, minutes = match.groups()
    seconds = float(hours or 0) * 3600 + int(minutes or 0) * 60
    if int(days or 0) > MAX_DAYS_AHEAD or seconds > MAX_DAYS_AHEAD * 86400:
        raise ValueError(f"too long a working time: {value!r}")
    return WorkingDuration(int(days or 0), seconds)


WorkingTime = Annotated[WorkingDuration, BeforeValidator(parse_working_duration)]


def known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Madrid)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(known_zone)]


def _intervals(value: Any) -> tuple[tuple[time, time], ...]:
    if value in (None, "", "closed"):
        return ()
    parts = value if isinstance(value, list) else str(value).split(",")
    found = []
    for part in parts:
        match = _INTERVAL.match(str(part).strip())
        if not match:
            raise ValueError(f"working hours are HH:MM-HH:MM, comma-separated; got {part!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if not (h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60):
            raise ValueError(f"no such time in {part!r}")
        start, end = time(h1, m1), time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2)
        if end <= start:
            raise ValueError(f"{part!r} ends before it starts")
        found.append((start, end))
    found.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(found)):
        raise ValueError(f"working hours overlap: {value!r}")
    return tuple(found)


class CalendarConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: TimeZoneName = "UTC"
    working_hours: dict[str, Annotated[tuple[tuple[time, time], ...], BeforeValidator(_intervals)]] = Field(
        default_factory=lambda: {day: _OFFICE_HOURS for day in WEEKDAYS[:5]})
    # A file of holidays, one per line: YYYY-MM-DD, then optionally its name; `#` starts a comment.
    holidays: str | None = None

    @field_validator("working_hours")
    @classmethod
    def _weekdays(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(WEEKDAYS))
        if unknown:
            raise ValueError(f"unknown weekday(s) {', '.join(unknown)}; use {', '.join(WEEKDAYS)}")
        if not any(value.values()):
            raise ValueError("no working hours on any day")
        return value


class WorkingCalendar:
    """Adds working time to an instant. Holidays and hours are in the calendar's time zone."""

    def __init__(self, config: CalendarConfig, holidays: frozenset[date] = frozenset()) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.holidays = holidays
        self._hours = tuple(config.working_hours.get(day, ()) for day in WEEKDAYS)

    def _open_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        if day in self.holidays:
            return []
        return [(datetime.combine(day, start, self.zone).astimezone(UTC),
                 datetime.combine(day, end, self.zone).astimezone(UTC)) for start, end in self._hours[day.weekday()]]

    def is_working_day(self, day: date) -> bool:
        return bool(self._open_intervals(day))

    def add(self, start: datetime, duration: WorkingDuration) -> datetime:
        """`start` plus working time. A start outside working hours counts from the next opening (a report
        on Friday evening + 1d is due one working day after Monday's opening)."""
        instant = self._after(start.astimezone(UTC), timedelta(0))
        if duration.days:
            local = instant.astimezone(self.zone)
            day = local.date()
            for _ in range(duration.days):
                day = self._next_working_day(day + timedelta(days=1))
            instant = datetime.combine(day, local.time(), self.zone).astimezone(UTC)
        return self._after(instant, timedelta(seconds=duration.seconds))

    def _after(self, instant: datetime, remaining: timedelta) -> datetime:
        """`remaining` working time after `instant`; with none, `instant` itself if it is working time,
        else the next opening."""
        day = instant.astimezone(self.zone).date()
        for _ in range(MAX_DAYS_AHEAD):
            for opens, closes in self._open_intervals(day):
                if closes <= instant:
                    continue
                instant = max(instant, opens)
                step = min(remaining, closes - instant)
                instant += step
                remaining -= step
                if remaining <= timedelta(0) and (step or instant < closes):
                    return instant
            day += timedelta(days=1)
        raise CalendarError("no working time ahead in the calendar")

    def _next_working_day(self, day: date) -> date:
        for _ in range(MAX_DAYS_AHEAD):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise CalendarError("no working day ahead in the calendar")


DEFAULT_CALENDAR = WorkingCalendar(CalendarConfig())
# For services that never close (a container on fire): every hour of every day counts.
ROUND_THE_CLOCK = WorkingCalendar(CalendarConfig(working_hours={day: "00:00-24:00" for day in WEEKDAYS}))


def load_calendar(path: Path) -> WorkingCalendar:
    """`calendar.yaml` and its holidays file (relative to it); the default week when there is no file."""
    if not path.exists():
        return DEFAULT_CALENDAR
    try:
        config = CalendarConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise CalendarError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CalendarError(f"{path}: {problems}") from None
    holidays: set[date] = set()
    if config.holidays:
        holidays_path = (path.parent / config.holidays).resolve()
        try:
            lines = holidays_path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CalendarError(f"{path}: holidays: {exc}") from exc
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                holidays.add(date.fromisoformat(text.split()[0]))
            except ValueError:
                raise CalendarError(f"{holidays_path}:{number}: not a date (YYYY-MM-DD): {text!r}") from None
    return WorkingCalendar(config, frozenset(holidays))
