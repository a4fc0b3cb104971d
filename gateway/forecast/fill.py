"""A container's fill forecast from its own readings.

The history kept (`History`, JSON in the rule's state) is the current filling since the last emptying, as
one sample per half hour (the median of the readings in it: a level sensor's noise and a bag dropped in
front of it do not move a median), the recent emptyings (a drop of `EMPTIED_DROP` points), and the
container's fill rate by kind of day, weekday and weekend, learnt from its past fillings.

The forecast fits the current filling with the Theil–Sen estimator (the median of the pairwise slopes,
robust to outliers) against "weekday-equivalent hours" (a weekend hour counts as the learnt weekend/weekday
ratio), with its 90 % confidence interval; a filling seen only for a few hours leans on the learnt rate.
The time to full walks the level forward hour by hour at the rate of each hour's kind of day; the early and
late ends of the interval come from the interval's high and low rate, from a level one spread higher and
lower.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import numpy as np
from scipy.stats import theilslopes
from typing_extensions import TypedDict

HOUR = 3600.0
BUCKET_S = 1800.0
# Two days of half hours: a longer filling is fitted on its latest two days. It bounds the state written with
# each reading and the fit's pairs (n²/2), which run on the ingest path.
MAX_SAMPLES = 2 * 48
BUCKET_READINGS = 15  # a half hour's median is of its first readings: a device reporting each second costs no more
EMPTIED_DROP = 25.0  # points: an emptying, far beyond a level sensor's noise
MIN_SAMPLES = 4  # two hours of a filling before it is forecast at all
PRIOR_WEIGHT = 12  # samples: a filling seen for six hours weighs as much as the learnt rate
HORIZON_H = 21 * 24.0  # beyond three weeks: "not in sight"


class History(TypedDict, total=False):
    seg: float  # when the current filling began (epoch s)
    s: list[list[float]]  # [bucket middle (epoch s), median fill %] of the current filling
    b: list[float]  # the fills read in the current half hour
    bt: float  # the current half hour's start (epoch s)
    empties: list[float]  # the last emptyings (epoch s)
    lt: float  # the device time of the latest reading observed (epoch s)
    wd: list[float]  # [rate %/h, weight h] learnt on weekdays
    we: list[float]  # the same at weekends


@dataclass(frozen=True)
class Forecast:
    at: datetime
    level: float  # % now, as fitted
    rate_per_h: float  # % per weekday hour
    hours_to_full: float | None  # None: not in sight (within three weeks)
    early_h: float | None  # the interval's early end (the high rate)
    late_h: float | None  # its late end (the low rate); None: not in sight
    weekend_factor: float

    def as_state(self) -> list[Any]:
        return [self.at.timestamp(), round(self.level, 2), round(self.rate_per_h, 4),
                None if self.hours_to_full is None else round(self.hours_to_full, 2),
                None if self.early_h is None else round(self.early_h, 2),
                None if self.late_h is None else round(self.late_h, 2)]


def _weekend(epoch: float, tz: tzinfo) -> bool:
    return _weekend_hour(int(epoch // HOUR), tz)


@functools.lru_cache(maxsize=8192)
def _weekend_hour(hour: int, tz: tzinfo) -> bool:
    """Whether an hour (since the epoch) is at a weekend where the container is: a forecast asks this of
    the same few hundred hours again and again."""
    return datetime.fromtimestamp(hour * HOUR, tz).weekday() >= 5


def observe(history: History, at: datetime, fill: float, tz: tzinfo) -> tuple[bool, bool]:
    """Adds a reading; (emptied, a half hour closed). An emptying closes the filling: its rates are learnt
    and a new one begins."""
    t = at.timestamp()
    if t <= history.get("lt", float("-inf")):
        # Already seen (a redelivered message, a duplicate read) or older than what was: a median counts
        # each reading once, whatever the broker does.
        return False, False
    history["lt"] = t
    emptied = False
    closed = False
    samples = history.setdefault("s", [])
    bucket = history.get("b", [])
    reference = max([s[1] for s in samples[-2:]] + ([statistics.median(bucket)] if bucket else []), default=None)
    if reference is not None and fill < reference - EMPTIED_DROP:
        _learn(history, tz)
        history["seg"] = t
        history["s"] = []
        history["b"] = []
        history["bt"] = t - t % BUCKET_S
        history["empties"] = [*history.get("empties", [])[-5:], t]
        emptied = True
    if "seg" not in history:
        history["seg"] = t
    start = t - t % BUCKET_S
    if history.get("bt") is not None and start > history["bt"] and history.get("b"):
        middle = [history["bt"] + BUCKET_S / 2, round(statistics.median(history["b"]), 2)]
        history["s"] = [*history["s"], middle][-MAX_SAMPLES:]
        history["b"] = []
        closed = True
    if history.get("bt") is None or start > history["bt"]:
        history["bt"] = start
    if len(history.get("b", [])) < BUCKET_READINGS:
        history["b"] = [*history.get("b", []), fill]
    return emptied, closed


def _runs(samples: list[list[float]], tz: tzinfo) -> list[tuple[bool, list[list[float]]]]:
    runs: list[tuple[bool, list[list[float]]]] = []
    for sample in samples:
        weekend = _weekend(sample[0], tz)
        if runs and runs[-1][0] == weekend:
            runs[-1][1].append(sample)
        else:
            runs.append((weekend, [sample]))
    return runs


def _learn(history: History, tz: tzinfo) -> None:
    """The closing filling's rate on each kind of day, into the learnt rates (weighted by hours seen)."""
    for weekend, run in _runs(history.get("s", []), tz):
        if len(run) < 2 * MIN_SAMPLES:
            continue
        xs = np.array([s[0] for s in run]) / HOUR
        ys = np.array([s[1] for s in run])
        if ys.max() >= 99.5:  # a full container's level stops rising: its rate says nothing
            continue
        slope = float(theilslopes(ys, xs)[0])
        hours = float(xs[-1] - xs[0])
        learnt: list[float] = (history.get("we") if weekend else history.get("wd")) or [0.0, 0.0]
        weight = min(learnt[1], 24 * 14.0)  # the last fortnight or so counts: a container's use changes
        updated = [(learnt[0] * weight + slope * hours) / (weight + hours), weight + hours]
        if weekend:
            history["we"] = updated
        else:
            history["wd"] = updated


def weekend_factor(history: History) -> float:
    wd, we = history.get("wd"), history.get("we")
    if not wd or not we or wd[1] < 12 or we[1] < 12 or wd[0] <= 0:
        return 1.0
    return max(0.25, min(4.0, we[0] / wd[0]))


def _effective_hours(t0: float, t1: float, factor: float, tz: tzinfo) -> float:
    """Weekday-equivalent hours from t0 to t1 (negative when t1 is earlier: the latest sample is the middle of
    the current half hour, which may be ahead of now)."""
    if t1 < t0:
        return -_effective_hours(t1, t0, factor, tz)
    total, t = 0.0, t0
    while t < t1:
        step = min(t1, t - t % HOUR + HOUR) - t
        total += step / HOUR * (factor if _weekend(t, tz) else 1.0)
        t += step
    return total


def _hours_to(level: float, threshold: float, rate: float, now: float, factor: float, tz: tzinfo) -> float | None:
    if level >= threshold:
        return 0.0
    if rate <= 0:
        return None
    hours, t = 0.0, now
    while hours < HORIZON_H:
        step_rate = rate * (factor if _weekend(t, tz) else 1.0)
        if step_rate > 0 and level + step_rate >= threshold:
            return hours + (threshold - level) / step_rate
        level += step_rate
        hours += 1.0
        t += HOUR
    return None


def forecast(history: History, now: datetime, threshold: float, tz: tzinfo = UTC) -> Forecast | None:
    """When the container will reach `threshold`, from what `history` holds at `now`; None until the
    current filling has been seen for two hours."""
    samples = list(history.get("s", []))
    if history.get("b"):
        samples.append([history["bt"] + BUCKET_S / 2, statistics.median(history["b"])])
    if len(samples) < MIN_SAMPLES:
        return None
    factor = weekend_factor(history)
    steps = [0.0] + [_effective_hours(a[0], b[0], factor, tz) for a, b in itertools.pairwise(samples)]
    xs = np.cumsum(steps)
    ys = np.array([s[1] for s in samples])
    slope, intercept, low, high = (float(v) for v in theilslopes(ys, xs, 0.90))
    n = len(samples)
    prior = history.get("wd")
    if prior and prior[1] >= 12 and n < 4 * PRIOR_WEIGHT:
        # A short filling's slope is uncertain: it is drawn toward the rate learnt before, and its interval
        # narrows as the prior's weight adds to the filling's few samples.
        share = n / (n + PRIOR_WEIGHT)
        blended = share * slope + (1 - share) * prior[0]
        half = max(high - low, 0.0) / 2 * math.sqrt(share)
        slope, low, high = blended, blended - half, blended + half
        intercept = float(np.median(ys - slope * xs))
    t_now = now.timestamp()
    level = intercept + slope * (float(xs[-1]) + _effective_hours(samples[-1][0], t_now, factor, tz))
    if math.isnan(level):
        return None
    level = max(0.0, min(100.0, level))
    # The level is known to within the readings' spread around the fit (a robust standard deviation): the
    # interval's early end is the high rate from the high level, its late end the low rate from the low one.
    spread = 1.4826 * float(np.median(np.abs(ys - (intercept + slope * xs))))
    return Forecast(now, level, slope, _hours_to(level, threshold, slope, t_now, factor, tz),
                    _hours_to(min(100.0, level + spread), threshold, high, t_now, factor, tz),
                    _hours_to(max(0.0, level - spread), threshold, low, t_now, factor, tz), factor)


def next_emptying(history: History, now: datetime) -> datetime | None:
    """When the container is next expected to be emptied, from the rhythm of its last emptyings."""
    empties = history.get("empties", [])
    if len(empties) < 3:
        return None
    interval = statistics.median(b - a for a, b in itertools.pairwise(empties))
    expected = empties[-1] + interval
    while expected < now.timestamp():
        expected += interval
    return datetime.fromtimestamp(expected, UTC)

