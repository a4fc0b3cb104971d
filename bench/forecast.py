"""Fill forecasts against the simulator's own fill model, on a simulated month of 150 containers
(`simulators/month.py`: sensor noise, weekend filling 1.4 times faster, emptied every two to three days,
lost messages).

- Error of the time to full: at each instant the fill model says a container is 6, 24 or 48 hours from
  80 % (were it not emptied), the forecast made from its readings until then; the mean absolute error in
  hours, and how often the truth lies inside the forecast's interval.
- Early catches: each clear overflow of the month (the model above 80 % for more than 45 minutes before
  the truck came): whether the `container-will-overflow` rule (fill_forecast) had warned before it
  began, and how long before; against the plain `container-full` threshold rule, which can only tell
  once it has happened. Warnings in fillings that were emptied before overflowing are counted as false
  alarms.

`python -m bench.forecast [--days N]` prints the figures and writes bench/results/forecast.json; `wastegate
bench` includes them.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.devices import Device
from gateway.events import Reading
from gateway.forecast.fill import History, forecast, observe
from gateway.rules.loader import load_rules
from gateway.rules.model import ReadingContext, RuleBase
from simulators.month import Month, hours_to_reach

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Europe/Madrid")).astimezone(UTC)
MADRID = ZoneInfo("Europe/Madrid")
HORIZONS = (6, 24, 48)
FULL = 80.0


def _rules() -> tuple[RuleBase, RuleBase]:
    rules = load_rules(REPO / "rules").by_id
    return rules["container-will-overflow"], rules["container-full"]


def _errors(month: Month, device: Device, readings: list[Reading]) -> dict[int, list[tuple[float, bool]]]:
    """Per horizon: (absolute error in hours, truth inside the interval) at each instant it applies."""
    truths = month.true_fills[device.device_id]
    rate = month.fill_rates[device.device_id]
    times = [t for t, _ in truths]
    found: dict[int, list[tuple[float, bool]]] = {h: [] for h in HORIZONS}
    history: History = {}
    pending = {h: True for h in HORIZONS}  # one instant per horizon and filling
    for reading in readings:
        emptied, _ = observe(history, reading.time, reading.fill_pct or 0.0, MADRID)
        if emptied:
            pending = {h: True for h in HORIZONS}
        at_s = (reading.time - month.start).total_seconds()
        index = bisect.bisect_right(times, at_s) - 1
        if index < 0 or not any(pending.values()):
            continue
        true_fill = truths[index][1]
        if true_fill >= FULL:
            continue
        truth_h = hours_to_reach(month.start, at_s, true_fill, rate, FULL)
        for horizon in HORIZONS:
            if pending[horizon] and truth_h <= horizon:
                pending[horizon] = False
                if truth_h < horizon - 1:
                    continue  # the filling began already closer than the horizon
                predicted = forecast(history, reading.time, FULL, MADRID)
                if predicted is None:
                    continue
                guess = predicted.hours_to_full if predicted.hours_to_full is not None else 21 * 24.0
                late = predicted.late_h if predicted.late_h is not None else float("inf")
                inside = (predicted.early_h or 0.0) <= truth_h <= late
                found[horizon].append((abs(guess - truth_h), inside))
    return found


def _incidents(rule: RuleBase, device: Device, readings: list[Reading]) -> list[tuple[datetime, datetime | None]]:
    """(opened, resolved) of each incident the rule opens on the container's readings."""
    state = None
    out: list[tuple[datetime, datetime | None]] = []
    for reading in readings:
        outcome = rule.evaluate(reading, ReadingContext(reading, device), state, reading.time)
        state = outcome.state
        for finding in outcome.findings:
            if finding.action == "open":
                out.append((reading.time, None))
            elif finding.action == "resolve" and out and out[-1][1] is None:
                out[-1] = (out[-1][0], reading.time)
    return out


def run(days: int = 30, containers: int = 150, name: str = "forecast", write: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    month = Month(START, days=days, containers=containers, trucks=0, households=0)
    readings_of: dict[str, list[Reading]] = {}
    for reading in month.history():
        if reading.fill_pct is not None:
            readings_of.setdefault(reading.device_id, []).append(reading)
    predictive, threshold = _rules()
    errors: dict[int, list[tuple[float, bool]]] = {h: [] for h in HORIZONS}
    overflows = caught_early = caught_by_threshold_early = caught_by_threshold = false_alarms = warnings = 0
    leads: list[float] = []
    truth_of: dict[str, list[Any]] = {}
    for event in month.truth:
        if event.rule_id == "container-full":
            truth_of.setdefault(event.subject, []).append(event)
    for device in month.devices():
        readings = readings_of.get(device.device_id, [])
        for horizon, found in _errors(month, device, readings).items():
            errors[horizon].extend(found)
        warned = _incidents(predictive, device, readings)
        told = _incidents(threshold, device, readings)
        events = truth_of.get(device.device_id, [])
        warnings += len(warned)
        for event in events:
            if event.ambiguous:
                continue
            overflows += 1
            early = [o for o, r in warned if o < event.start and (r is None or r >= event.start)]
            if early:
                caught_early += 1
                leads.append((event.start - early[0]).total_seconds() / 3600)
            if any(o < event.start and (r is None or r >= event.start) for o, r in told):
                caught_by_threshold_early += 1
            if any(event.start <= o <= event.end for o, _ in told):
                caught_by_threshold += 1
        for opened, _ in warned:
            # a warning is borne out when the filling it was given in overflowed (ambiguous ones too)
            if not any(e.start - timedelta(hours=48) <= opened <= e.end for e in events):
                false_alarms += 1
    figures: dict[str, Any] = {
        "days": days, "containers": containers, "readings": sum(len(r) for r in readings_of.values()),
        "time_to_full_error_h": {
            f"{h}h": {"instants": len(errors[h]),
                      "mae_h": round(statistics.fmean(e for e, _ in errors[h]), 2) if errors[h] else None,
                      "median_error_h": round(statistics.median(e for e, _ in errors[h]), 2) if errors[h] else None,
                      "inside_interval": round(sum(i for _, i in errors[h]) / len(errors[h]), 3) if errors[h]
                      else None}
            for h in HORIZONS},
        "overflows": overflows,
        "forecast_rule": {"caught_before_overflow": caught_early,
                          "share": round(caught_early / overflows, 3) if overflows else None,
                          "median_lead_h": round(statistics.median(leads), 1) if leads else None,
                          "warnings": warnings, "false_alarms": false_alarms},
        "threshold_rule": {"caught_before_overflow": caught_by_threshold_early,
                           "caught_after_it_began": caught_by_threshold},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--containers", type=int, default=150)
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.days, arguments.containers), indent=2))


if __name__ == "__main__":
    main()
