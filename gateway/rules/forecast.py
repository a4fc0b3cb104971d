"""`fill_forecast`: a container that will overflow before its next collection, said early enough to act.

Each container's fill history is kept in the rule's state (`gateway/forecast/fill.py`: half-hour medians of
the current filling, its emptyings, its learnt weekday and weekend rates). At each half hour the forecast
is made again; the incident opens when the container is forecast to reach `threshold` within `horizon`
and before its next collection: its `collection_days` and `collection_window` attributes when it has a
schedule, else the rhythm of its last emptyings (none known: within `horizon` is enough). It resolves when
the container is emptied. The latest forecast stays in the state, for `wastegate plan` and the statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from gateway.events import Reading
from gateway.forecast.fill import History, forecast, next_emptying, observe
from gateway.organisation.calendar import TimeZoneName
from gateway.rules.durations import Duration
from gateway.rules.model import ContextWith, Outcome, RuleBase, RuleConfigBase

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class FillForecastConfig(RuleConfigBase):
    kind: Literal["fill_forecast"]
    threshold: float = Field(default=80.0, gt=0, le=100, description="the level called full, %")
    horizon: Duration = timedelta(hours=36)
    timezone: TimeZoneName = "UTC"

    def build(self, zones: object, directory: object = None) -> FillForecastRule:
        return FillForecastRule(self)


class ForecastState(History, total=False):
    open: bool  # the incident is open
    f: list[Any] | None  # the latest forecast (Forecast.as_state)
    p: list[list[float]]  # this filling's forecasts, one each 3 hours: [made at, full at] (epoch s)
    x: bool  # this filling has reached the threshold
    err: list[list[float]]  # the last forecast errors: [reached at, |full at − reached at| in hours], made ~24 h ahead


def _note_error(state: ForecastState, reached: float) -> None:
    """How far the forecast made about a day earlier was from when the filling reached the threshold."""
    made = [p for p in state.get("p", []) if 18 * 3600 <= reached - p[0] <= 30 * 3600]
    if made:
        closest = min(made, key=lambda p: abs(reached - p[0] - 24 * 3600))
        state["err"] = [*state.get("err", [])[-9:], [reached, round(abs(closest[1] - reached) / 3600, 2)]]


def next_scheduled(attributes: Mapping[str, Any], after: datetime, tz: ZoneInfo) -> datetime | None:
    """The start of the container's next collection window after `after`, from its schedule attributes."""
    days = attributes.get("collection_days") or ()
    window = str(attributes.get("collection_window") or "")
    try:
        start = time.fromisoformat(window.split("-")[0]) if window else time(6, 0)
    except ValueError:
        return None
    if not days:
        return None
    local: date = after.astimezone(tz).date()
    for ahead in range(8):
        day = local + timedelta(days=ahead)
        at = datetime.combine(day, start, tz)
        if DAYS[day.weekday()] in days and at > after:
            return at
    return None


class FillForecastRule(RuleBase):
    kind = "fill_forecast"
    State = ForecastState

    def __init__(self, config: FillForecastConfig) -> None:
        super().__init__(config)
        self.forecasting = config
        self.tz = ZoneInfo(config.timezone)
        self.horizon_h = config.horizon / timedelta(hours=1)

    def evaluate(self, reading: Reading, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        if reading.fill_pct is None:
            return Outcome(state)
        current: ForecastState = dict(state or {})  # type: ignore[assignment]
        emptied, closed = observe(current, reading.time, reading.fill_pct, self.tz)
        findings = []
        if emptied:
            current.pop("p", None)
            current.pop("x", None)
            if current.pop("open", False):
                findings.append(self.finding("resolve", reading.device_id, reading.time, context,
                                             data={"emptied_at": reading.time.isoformat()}))
        if not (closed or emptied):
            return Outcome(current, findings)
        samples = current.get("s", [])
        if samples and samples[-1][1] >= self.forecasting.threshold and not current.get("x"):
            current["x"] = True
            _note_error(current, samples[-1][0])
        predicted = forecast(current, reading.time, self.forecasting.threshold, self.tz)
        current["f"] = predicted.as_state() if predicted else None
        if predicted is not None and predicted.hours_to_full is not None and not current.get("x"):
            made = current.get("p", [])
            if not made or reading.time.timestamp() - made[-1][0] >= 3 * 3600:
                full_at_s = reading.time.timestamp() + predicted.hours_to_full * 3600
                current["p"] = [*made[-39:], [reading.time.timestamp(), round(full_at_s)]]
        if predicted is None or current.get("open") or predicted.hours_to_full is None \
                or predicted.level >= self.forecasting.threshold or predicted.hours_to_full > self.horizon_h:
            return Outcome(current, findings)
        full_at = reading.time + timedelta(hours=predicted.hours_to_full)
        attributes = context.get("device") or {}
        collection = next_scheduled(attributes, reading.time, self.tz) or next_emptying(current, reading.time)
        if collection is not None and collection <= full_at:
            return Outcome(current, findings)
        current["open"] = True
        local_full = full_at.astimezone(self.tz)
        more = ContextWith(context, full_at=local_full.strftime("%a %H:%M"), hours=predicted.hours_to_full,
                           next_collection=collection.astimezone(self.tz).strftime("%a %H:%M") if collection
                           else "not known")
        findings.append(self.finding("open", reading.device_id, reading.time, more, data={
            "full_at": full_at.isoformat(), "hours_to_full": round(predicted.hours_to_full, 1),
            "early_h": predicted.early_h, "late_h": predicted.late_h, "rate_per_h": round(predicted.rate_per_h, 3),
            "level": round(predicted.level, 1), "next_collection": collection.isoformat() if collection else None}))
        return Outcome(current, findings)
