"""A backtest: readings from history through the rule engine the gateway runs, on a clock driven by
device time, into an in-memory case book. It writes nothing: no incident, no rule state, no notification.

The replay keeps the live gateway's order of things. Readings go to the engine in batches; the periodic
sweep (absence, collection) runs whenever device time passes a multiple of the sweep interval, between
two batches, with `now` at that multiple, as the gateway sweeps every `WASTEGATE_SWEEP_S` between batches.
What can still differ from what the gateway did at the time (see the README): readings the gateway
received too late to evaluate (a backtest reads history in device-time order and evaluates them), a
silence that ended within one sweep interval of its limit, and incidents staff closed by hand.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import psycopg

from gateway.devices import DeviceDirectory
from gateway.events import Reading
from gateway.ingest import IngestLimits, Ingestor
from gateway.lab.casebook import CaseBook, WouldBeIncident
from gateway.lab.report import Comparison, RuleSummary, compare, in_range, stored_incidents, summarize
from gateway.profiles.loader import ProfileSet
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleFileError, RuleSet, load_rules
from gateway.sources.replay import HistoryFilter, StoredTelemetry, read_capture
from gateway.store.devices import devices_by_id
from gateway.store.queries import query


class BacktestError(ValueError):
    """A backtest that cannot run, said so a person can fix it: a bad range, an unknown rule, an empty
    history, a rule file that does not load (file:line: reason)."""


Progress = Callable[[datetime, int], None]  # device time reached, readings replayed so far


class Backtest:
    """One rule set over one history: the engine with its own (fresh, or given) state, and its case book."""

    def __init__(self, name: str, rules: RuleSet, devices: DeviceDirectory,
                 profile_intervals: Mapping[str, float | None],
                 start_states: Iterable[tuple[str, str, Mapping[str, Any]]] = ()) -> None:
        self.name = name
        self.rules = rules
        self.engine = RuleEngine(rules, devices, profile_intervals, start_states)
        self.book = CaseBook()

    def evaluate(self, readings: Sequence[Reading], now: datetime) -> None:
        self.book.apply(self.engine.evaluate(readings, now).findings)

    def sweep(self, now: datetime) -> None:
        self.book.apply(self.engine.sweep(now).findings)

    @property
    def incidents(self) -> list[WouldBeIncident]:
        return self.book.incidents


@dataclass
class ReplayStats:
    readings: int = 0
    sweeps: int = 0
    first: datetime | None = None
    last: datetime | None = None
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0


def replay(readings: Iterable[Reading], runs: Sequence[Backtest], start: datetime, until: datetime,
           sweep_every: timedelta, batch_size: int = 2000, progress: Progress | None = None) -> ReplayStats:
    """Feeds every run the same readings (in device-time order) and the same sweeps: at `start` plus each
    multiple of `sweep_every`, up to `until`."""
    if sweep_every <= timedelta(0):
        raise BacktestError("the sweep interval must be positive")
    stats = ReplayStats()
    started = time.perf_counter()
    next_sweep = start + sweep_every
    batch: list[Reading] = []

    def flush() -> None:
        if batch:
            now = batch[-1].time
            for run in runs:
                run.evaluate(batch, now)
            batch.clear()
            if progress is not None:
                progress(now, stats.readings)

    for reading in readings:
        if reading.time >= next_sweep:
            flush()
            while next_sweep <= reading.time:
                for run in runs:
                    run.sweep(next_sweep)
                stats.sweeps += 1
                next_sweep += sweep_every
        batch.append(reading)
        stats.readings += 1
        if stats.first is None:
            stats.first = reading.time
        stats.last = reading.time
        if len(batch) >= batch_size:
            flush()
    flush()
    while next_sweep <= until:
        for run in runs:
            run.sweep(next_sweep)
        stats.sweeps += 1
        next_sweep += sweep_every
    if progress is not None:
        progress(until, stats.readings)
    stats.elapsed_s = time.perf_counter() - started
    return stats


def capture_readings(path: Path, profiles: ProfileSet, devices: DeviceDirectory,
                     batch_size: int = 1000) -> Iterator[Reading]:
    """The readings of a capture file (see `gateway.sources.replay`), decoded by the gateway's own decode
    stage on the messages' receive clock, in the file's order; what the gateway would dead-letter is left
    out."""
    received = [datetime.min]
    ingestor = Ingestor(profiles, devices, lambda: received[0],
                        IngestLimits(max_future=timedelta(days=3650), max_past=timedelta(days=3650)))
    batch = []
    for message in read_capture(path):
        batch.append(message)
        if len(batch) >= batch_size:
            received[0] = batch[-1].received_at
            yield from sorted(ingestor.process(batch).readings, key=_time)
            batch = []
    if batch:
        received[0] = batch[-1].received_at
        yield from sorted(ingestor.process(batch).readings, key=_time)


def _time(reading: Reading) -> datetime:
    return reading.time


# -- rule sets -------------------------------------------------------------------------------------------


def load_rule_set(path: Path | None, deployed: Path, service_codes: Iterable[str] | None,
                  rule_id: str | None = None) -> RuleSet:
    """The rules of a directory (default: the deployed one) or of one file, focused on one rule if asked.
    A file is loaded beside the zones and data of its own directory, else of the deployed rules."""
    if path is None or path.is_dir():
        directory = path or deployed
        try:
            rules = load_rules(directory, service_codes)
        except RuleFileError as exc:
            raise BacktestError(str(exc)) from None
        return focus(rules, rule_id)
    if not path.is_file():
        raise BacktestError(f"{path}: no such rule file or directory")
    return load_rule_text(path.read_text(encoding="utf-8"), path, deployed, service_codes, rule_id,
                          beside=path.parent)


def load_rule_text(text: str, shown_as: Path | str, deployed: Path, service_codes: Iterable[str] | None,
                   rule_id: str | None = None, *, beside: Path | None = None,
                   replacing: str | None = None) -> RuleSet:
    """A rule file given as text (the console's editor, the API), validated as `rules check` validates,
    its problems naming `shown_as`. With `replacing`, the deployed set with that file's rules replaced by
    these; else these rules alone."""
    with tempfile.TemporaryDirectory(prefix="wastegate-lab-") as scratch:
        directory = Path(scratch)
        for part in ("zones", "data"):
            source = beside / part if beside is not None and (beside / part).is_dir() else deployed / part
            if source.is_dir():
                (directory / part).symlink_to(source.resolve(), target_is_directory=True)
        if replacing is not None:
            for other in deployed.glob("*.yaml"):
                if other.name != replacing:
                    shutil.copy(other, directory / other.name)
        target = directory / (replacing or "candidate.yaml")
        target.write_text(text, encoding="utf-8")
        try:
            rules = load_rules(directory, service_codes)
        except RuleFileError as exc:
            problems = [problem.replace(str(target), str(shown_as)).replace(str(directory), str(deployed))
                        for problem in exc.problems]
            raise BacktestError("\n".join(problems)) from None
    return focus(rules, rule_id)


def check_rule_text(text: str, shown_as: str, deployed: Path, service_codes: Iterable[str] | None) -> list[str]:
    """The problems of a rule file given as text, as `rules check` reports them (file:line: reason)."""
    try:
        load_rule_text(text, shown_as, deployed, service_codes)
    except BacktestError as exc:
        return str(exc).splitlines()
    return []


def focus(rules: RuleSet, rule_id: str | None) -> RuleSet:
    if rule_id is None:
        return rules
    chosen = tuple(rule for rule in rules.rules if rule.id == rule_id)
    if not chosen:
        known = ", ".join(sorted(rule.id for rule in rules.rules)) or "none"
        raise BacktestError(f"no rule {rule_id!r} in this rule set (its rules: {known})")
    return RuleSet(chosen, rules.signature)



# -- a whole backtest -------------------------------------------------------------------------------------


@dataclass
class BacktestPlan:
    """A backtest to run: a history, a rule set (and optionally a second one to compare with), whether to
    compare with the incidents the store holds, and the replay's parameters."""

    history: HistoryFilter
    rules: RuleSet
    rules_name: str = "rules"
    compare: RuleSet | None = None
    compare_name: str = "other"
    with_store: bool = False
    sweep_every: timedelta = timedelta(seconds=60)
    warmup: timedelta = timedelta(0)
    start_states: Sequence[tuple[str, str, Mapping[str, Any]]] = ()
    zone: tzinfo = UTC


@dataclass
class BacktestReport:
    since: datetime
    until: datetime
    stats: ReplayStats
    rule_ids: list[str]
    runs: dict[str, list[WouldBeIncident]]
    summaries: dict[str, dict[str, RuleSummary]]
    comparisons: list[Comparison]

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(), "until": self.until.isoformat(),
            "readings": self.stats.readings, "sweeps": self.stats.sweeps,
            "elapsed_s": round(self.stats.elapsed_s, 3), "readings_per_s": round(self.stats.rate),
            "rules": self.rule_ids,
            "summaries": {name: {rule: s.as_json() for rule, s in by_rule.items()}
                          for name, by_rule in self.summaries.items()},
            "incidents": {name: [i.as_json() for i in incidents] for name, incidents in self.runs.items()},
            "comparisons": [c.as_json() for c in self.comparisons],
        }


STORE = "store"


def run_plan(conn: psycopg.Connection[Any], plan: BacktestPlan, profile_intervals: Mapping[str, float | None],
             progress: Progress | None = None, readings: Iterable[Reading] | None = None) -> BacktestReport:
    """Replays the plan's history (or the `readings` given, e.g. a capture's) through its rule sets, in one
    pass, and compares. Reads from `conn` (the registry, the telemetry, the store's incidents), in a
    read-only transaction: it can be a read replica's."""
    history = plan.history
    start = history.since - plan.warmup
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.read_only = True
    with conn.transaction():
        devices = DeviceDirectory(devices_by_id(conn))
        if readings is None:
            stored = StoredTelemetry(conn, HistoryFilter(start, history.until, history.devices, history.kinds,
                                                         history.bbox))
            if stored.device_ids == []:
                raise BacktestError("no device matches the devices, kinds or box asked for")
            first, _, _ = stored.extent()
            if first is None:
                raise BacktestError(f"no readings are stored between {start.isoformat()} and "
                                    f"{history.until.isoformat()}{_extent_hint(conn)}")
            readings = stored
        runs = [Backtest(plan.rules_name, plan.rules, devices, profile_intervals, plan.start_states)]
        if plan.compare is not None:
            runs.append(Backtest(plan.compare_name, plan.compare, devices, profile_intervals, plan.start_states))
        stats = replay(readings, runs, start, history.until, plan.sweep_every, progress=progress)
        if stats.readings == 0:
            raise BacktestError(f"no readings between {start.isoformat()} and {history.until.isoformat()}")
        rule_ids = sorted({rule.id for run in runs for rule in run.rules.rules})
        found = {run.name: in_range(run.incidents, history.since, history.until) for run in runs}
        comparisons = []
        if plan.compare is not None:
            comparisons.append(compare(plan.rules_name, found[plan.rules_name], plan.compare_name,
                                       found[plan.compare_name]))
        if plan.with_store:
            own_ids = [rule.id for rule in plan.rules.rules]
            found[STORE] = stored_incidents(conn, own_ids, history.since, history.until)
            comparisons.append(compare(plan.rules_name, found[plan.rules_name], STORE, found[STORE]))
    summaries = {name: summarize(incidents, [r for r in rule_ids if name != STORE or r in plan.rules.by_id],
                                 plan.zone) for name, incidents in found.items()}
    return BacktestReport(history.since, history.until, stats, rule_ids, found, summaries, comparisons)


def _extent_hint(conn: psycopg.Connection[Any]) -> str:
    latest = conn.execute(query("latest_telemetry_time")).fetchone()
    if latest is None or latest[0] is None:
        return " (the store holds no telemetry at all)"
    return f" (the latest stored reading is at {latest[0].isoformat()})"
