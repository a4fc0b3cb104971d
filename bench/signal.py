"""Signal quality of the shipped rules: a simulated month of the city (`simulators/month.py`: sensor noise,
GPS jitter and jumps, dropouts, late and duplicate data, and its ground truth) replayed through the
shipped rules as a backtest reads history, and through a naive stateless version of them (no durations,
no hysteresis, no cool-downs) beside them; and through the shipped rules in the order the live gateway
received the messages. Precision and recall per rule against the simulator's truth.

    python -m bench.signal [--days 30] [--name latest]

Goal (issue 15): precision ≥ 0.98 and recall ≥ 0.99 for every shipped rule. Writes
`bench/results/signal-<name>.json`.

Matching: an incident matches a truth event of its rule and subject when it opens within the event's
window (from a little before it began, for a noisy sensor that crosses a level early, to a little after it
ended); each event matches one incident at most, so a rule that opens twice for one event (flapping) loses
precision. Incidents within an `ambiguous` event's window count neither way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from gateway.devices import DeviceDirectory
from gateway.events import Reading
from gateway.lab.backtest import Backtest, replay
from gateway.lab.casebook import WouldBeIncident
from gateway.profiles.loader import load_profiles
from gateway.rules.loader import load_rules
from simulators.month import Month, TruthEvent

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
START = datetime(2026, 3, 2, tzinfo=ZoneInfo("Europe/Madrid"))  # a Monday
SWEEP = timedelta(seconds=60)
PRECISION_GOAL, RECALL_GOAL = 0.98, 0.99

# How early and how late after a truth event an incident still belongs to it, per rule.
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "container-full": (timedelta(hours=3), timedelta(minutes=30)),
    "container-fire": (timedelta(minutes=10), timedelta(minutes=30)),
    "container-tilted": (timedelta(0), timedelta(minutes=30)),
    "sensor-battery-low": (timedelta(days=4), timedelta(hours=1)),
    # from the first report missed (a rule that waits for fewer than three opens sooner)
    "sensor-silent": (timedelta(minutes=25), timedelta(0)),
    "truck-overspeed-school-zone": (timedelta(seconds=10), timedelta(seconds=30)),
    "truck-outside-service-area": (timedelta(0), timedelta(minutes=1)),
    "truck-idling": (timedelta(0), timedelta(minutes=1)),
    "door-to-door": (timedelta(minutes=1), timedelta(hours=2)),
}


def naive(rule: dict[str, Any]) -> dict[str, Any]:
    """The same rule without what makes it robust: no `for` durations, no separate clear condition, no
    hysteresis on zones, no cool-down, every incident resolved when its condition stops holding."""
    rule = json.loads(json.dumps(rule))
    kind = rule["kind"]
    incident = rule.setdefault("incident", {})
    incident.pop("cooldown", None)
    if kind == "threshold":
        for key in ("for", "clear", "clear_for", "severity_steps"):
            rule.pop(key, None)
        incident["auto_resolve"] = True
    elif kind == "geofence":
        for key in ("min_inside", "min_outside", "condition_for"):
            rule.pop(key, None)
    elif kind == "absence":
        rule["missed_reports"] = 1
    return rule


def rule_sets(directory: Path, month: Month) -> tuple[Path, Path]:
    shipped = directory / "shipped"
    shutil.copytree(REPO / "rules", shipped)
    (shipped / "data" / "households.yaml").write_text(month.households_yaml())
    stateless = directory / "naive"
    shutil.copytree(shipped, stateless)
    for path in stateless.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        document["rules"] = [naive(rule) for rule in document["rules"]]
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return shipped, stateless


def score(incidents: Sequence[WouldBeIncident], truth: Sequence[TruthEvent], rule_id: str) -> dict[str, Any]:
    early, late = WINDOWS.get(rule_id, (timedelta(0), timedelta(0)))
    events = sorted((e for e in truth if e.rule_id == rule_id), key=lambda e: e.start)
    by_subject: dict[str, list[TruthEvent]] = {}
    for event in events:
        by_subject.setdefault(event.subject, []).append(event)
    matched: set[int] = set()
    hits = false_alarms = ignored = 0
    false_examples: list[str] = []
    for incident in sorted((i for i in incidents if i.rule_id == rule_id), key=lambda i: i.opened_at):
        events_of = by_subject.get(incident.subject, [])
        candidates = [e for e in events_of if e.start - early <= incident.opened_at <= e.end + late]
        # An incident opened in an ambiguous lead-in (a battery gauge reading 14.9% while the charge is
        # 16%) and still open when the real event begins is that event's detection.
        candidates += [e for e in events_of if not e.ambiguous and e not in candidates and any(
            lead.ambiguous and lead.end == e.start for lead in candidates)
            and (incident.resolved_at is None or incident.resolved_at >= e.start)]
        real = [e for e in candidates if not e.ambiguous and id(e) not in matched]
        if real:
            matched.add(id(real[0]))
            hits += 1
        elif any(e.ambiguous for e in candidates):
            ignored += 1
        else:
            false_alarms += 1
            false_examples.append(f"{incident.subject} at {incident.opened_at.isoformat()}")
    expected = sum(not e.ambiguous for e in events)
    return {"truth": expected, "ambiguous": sum(e.ambiguous for e in events), "incidents": hits + false_alarms,
            "hits": hits, "false_alarms": false_alarms, "not_counted": ignored,
            "precision": round(hits / (hits + false_alarms), 4) if hits + false_alarms else 1.0,
            "recall": round(hits / expected, 4) if expected else 1.0,
            "missed": [f"{e.subject} at {e.start.isoformat()}" for e in events
                       if not e.ambiguous and id(e) not in matched][:10],
            "false_alarm_examples": false_examples[:10]}


def run(days: int, name: str) -> dict[str, Any]:
    started = time.perf_counter()
    month = Month(START, days=days)
    history = month.history()
    received = month.as_received()
    generated_s = time.perf_counter() - started
    profiles = load_profiles(REPO / "device_profiles").profiles
    intervals = {p.name: p.config.defaults.expected_interval_s for p in profiles}
    with tempfile.TemporaryDirectory(prefix="wastegate-bench-signal-") as scratch:
        shipped_dir, naive_dir = rule_sets(Path(scratch), month)
        shipped, stateless = load_rules(shipped_dir), load_rules(naive_dir)
        live = load_rules(shipped_dir)

    def backtest(name: str, rules: Any, readings: list[Reading]) -> Backtest:
        run = Backtest(name, rules, DeviceDirectory(month.devices()), intervals)
        replay(readings, [run], month.start, month.end, SWEEP)
        return run

    timed = time.perf_counter()
    runs = {"shipped": backtest("shipped", shipped, history), "naive": backtest("naive", stateless, history),
            "shipped_as_received": backtest("live", live, received)}
    replay_s = time.perf_counter() - timed
    rule_ids = [rule.id for rule in shipped.rules]
    figures: dict[str, Any] = {
        "days": days, "readings": len(history), "messages_sent": month.sent,
        "duplicates_dropped": month.sent - len(history), "truth_events": sum(not e.ambiguous for e in month.truth),
        "truth_by_rule": {r: sum(e.rule_id == r and not e.ambiguous for e in month.truth) for r in rule_ids},
        "seconds": {"simulate": round(generated_s, 1), "replay": round(replay_s, 1)},
        "rules": {rule_id: {label: score(run.incidents, month.truth, rule_id) for label, run in runs.items()}
                  for rule_id in rule_ids},
    }
    shipped_scores = [figures["rules"][r]["shipped"] for r in rule_ids]
    figures["goal"] = {"precision": PRECISION_GOAL, "recall": RECALL_GOAL,
                       "met": all(s["precision"] >= PRECISION_GOAL and s["recall"] >= RECALL_GOAL
                                  for s in shipped_scores)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"signal-{name}.json").write_text(json.dumps(figures, indent=2))
    return figures


def print_table(figures: dict[str, Any]) -> None:
    print(f"{figures['days']} days, {figures['readings']:,} readings ({figures['duplicates_dropped']:,} duplicates "
          f"dropped), {figures['truth_events']} ground-truth events")
    print(f"{'rule':30} {'truth':>5}  {'shipped P':>9} {'R':>6}  {'naive P':>8} {'R':>6}  "
          f"{'as received P':>13} {'R':>6}")
    for rule_id, by_set in figures["rules"].items():
        s, n, live = by_set["shipped"], by_set["naive"], by_set["shipped_as_received"]
        print(f"{rule_id:30} {s['truth']:>5}  {s['precision']:>9.3f} {s['recall']:>6.3f}  {n['precision']:>8.3f} "
              f"{n['recall']:>6.3f}  {live['precision']:>13.3f} {live['recall']:>6.3f}")
    print("goal met" if figures["goal"]["met"] else "goal NOT met")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--name", default="latest")
    args = parser.parse_args()
    figures = run(args.days, args.name)
    print_table(figures)
    print(f"wrote {RESULTS / f'signal-{args.name}.json'}")


if __name__ == "__main__":
    main()
