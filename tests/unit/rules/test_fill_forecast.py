"""The fill forecast and the `fill_forecast` rule on a synthetic container whose true fill is known."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo

from gateway.devices import Device
from gateway.events import Reading
from gateway.forecast.fill import History, forecast, observe, weekend_factor
from gateway.rules.forecast import FillForecastConfig, next_scheduled
from gateway.rules.model import ReadingContext

MADRID = ZoneInfo("Europe/Madrid")
START = datetime(2026, 3, 2, 0, 0, tzinfo=MADRID).astimezone(UTC)  # a Monday


def true_fill(hours: float, start: float = 5.0, rate: float = 1.0) -> float:
    return start + rate * hours


def readings(hours: float, rng: random.Random, start: float = 5.0, rate: float = 1.0) -> list[tuple[datetime, float]]:
    out = []
    t = 0.0
    while t <= hours:
        out.append((START + timedelta(hours=t), max(0.0, true_fill(t, start, rate) + rng.gauss(0, 1.5))))
        t += 1 / 6
    return out


def test_the_time_to_full_is_close_to_the_truth_and_the_interval_holds_it() -> None:
    rng = random.Random(3)
    history: History = {}
    for at, fill in readings(20, rng):
        observe(history, at, fill, MADRID)
    now = START + timedelta(hours=20)
    predicted = forecast(history, now, 80.0, MADRID)
    assert predicted is not None and predicted.hours_to_full is not None
    truth = 80.0 - true_fill(20)  # 55 h at 1 %/h on weekdays
    assert abs(predicted.hours_to_full - truth) < 0.15 * truth
    assert predicted.early_h is not None and predicted.late_h is not None
    assert predicted.early_h <= truth <= predicted.late_h
    assert abs(predicted.rate_per_h - 1.0) < 0.15


def test_a_noisy_reading_is_not_an_emptying_but_a_drop_is() -> None:
    rng = random.Random(5)
    history: History = {}
    for at, fill in readings(10, rng, start=40.0):
        assert not observe(history, at, fill, MADRID)[0]
    spike_at = START + timedelta(hours=10, minutes=5)
    emptied, _ = observe(history, spike_at, 30.0, MADRID)  # a bag in front of the sensor: 20 points off
    assert not emptied
    emptied, _ = observe(history, spike_at + timedelta(minutes=10), 2.0, MADRID)
    assert emptied and history["s"] == [] and len(history["empties"]) == 1


def test_the_rule_warns_before_the_overflow_and_resolves_when_emptied() -> None:
    rule = FillForecastConfig.model_validate({
        "id": "container-will-overflow", "kind": "fill_forecast", "threshold": 80, "horizon": "36h",
        "timezone": "Europe/Madrid", "incident": {"service_code": "container_overflow_forecast",
                                                   "title": "{device.name} full by {full_at}"}}).build(None)
    device = Device("C-1", "container", "container", "Mallorca 401", 41.4, 2.17,
                    MappingProxyType({"collection_days": ["fri"], "collection_window": "06:00-10:00"}))
    rng = random.Random(9)
    state = None
    opened_at = resolved_at = None
    series = readings(80, rng, start=5.0, rate=1.2)  # full (80 %) after 62.5 h, Wednesday afternoon
    series.append((START + timedelta(hours=80, minutes=10), 3.0))  # emptied
    for index, (at, fill) in enumerate(series):
        reading = Reading("C-1", at, at, index.to_bytes(4, "big"), "container", fill_pct=fill)
        outcome = rule.evaluate(reading, ReadingContext(reading, device), state, at)
        state = outcome.state
        for finding in outcome.findings:
            if finding.action == "open":
                opened_at = at
                assert finding.title.startswith("Mallorca 401 full by ")
            if finding.action == "resolve":
                resolved_at = at
    full_at = START + timedelta(hours=(80 - 5) / 1.2)
    assert opened_at is not None and opened_at < full_at - timedelta(hours=6)  # time to act
    assert opened_at >= full_at - timedelta(hours=40)  # not before the 36 h horizon (and the forecast's error)
    assert resolved_at == series[-1][0]
    assert state is not None
    reached, error_h = state["err"][-1]  # the forecast of a day before, against when 80 % was reached
    assert abs(reached - full_at.timestamp()) < 2 * 3600 and error_h < 4  # half-hour medians of noisy readings


def test_the_next_collection_comes_from_the_schedule() -> None:
    monday = datetime(2026, 3, 2, 12, 0, tzinfo=MADRID)
    assert next_scheduled({"collection_days": ["mon", "thu"], "collection_window": "06:00-12:00"}, monday, MADRID) \
        == datetime(2026, 3, 5, 6, 0, tzinfo=MADRID)
    assert next_scheduled({}, monday, MADRID) is None


def test_the_weekend_rate_is_learnt_from_past_fillings() -> None:
    rng = random.Random(13)
    history: History = {}
    fill, t = 3.0, 0.0
    next_empty = 60.0
    while t < 24 * 21:
        at = START + timedelta(hours=t)
        weekend = at.astimezone(MADRID).weekday() >= 5
        fill += (1.4 if weekend else 1.0) / 6
        if t >= next_empty:
            fill, next_empty = rng.uniform(0, 3), next_empty + 60
        observe(history, at, max(0.0, fill + rng.gauss(0, 1.5)), MADRID)
        t += 1 / 6
    assert len(history["empties"]) >= 5
    assert abs(weekend_factor(history) - 1.4) < 0.2
    assert abs(history["wd"][0] - 1.0) < 0.1


def test_the_rule_leaves_the_state_it_was_given_as_it_was() -> None:
    rule = FillForecastConfig.model_validate({
        "id": "r", "kind": "fill_forecast", "incident": {"service_code": "container_overflow_forecast",
                                                         "title": "t"}}).build(None)
    device = Device("C-1", "container", "container", "C")
    rng = random.Random(2)
    state = None
    for index, (at, fill) in enumerate(readings(30, rng)):
        reading = Reading("C-1", at, at, index.to_bytes(4, "big"), "container", fill_pct=fill)
        before = copy.deepcopy(state)
        outcome = rule.evaluate(reading, ReadingContext(reading, device), state, at)
        assert state == before  # the engine may still hold the previous state
        state = outcome.state


def test_a_reading_seen_again_changes_nothing() -> None:
    """A message redelivered after a replica's crash, or read twice, is the same reading: counted once."""
    rng = random.Random(8)
    history: History = {}
    series = readings(6, rng)
    for at, fill in series:
        observe(history, at, fill, MADRID)
    before = copy.deepcopy(history)
    assert observe(history, *series[-1], MADRID) == (False, False)
    assert observe(history, series[-3][0], 99.0, MADRID) == (False, False)  # older than the latest: ignored
    assert history == before
