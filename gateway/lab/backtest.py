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

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
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


def read_start_states(path: Path) -> list[tuple[str, str, Mapping[str, Any]]]:
    """A starting state for a backtest: a JSON list of `{"rule_id", "subject", "state"}`, each state as
    `rule_state` stores it (`{"v": version, "s": {...}}`), e.g. `SELECT json_agg(...) FROM rule_state`
    on a copy of the store taken at the start of the range."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        states: list[tuple[str, str, Mapping[str, Any]]] = [
            (str(item["rule_id"]), str(item["subject"]), dict(item["state"])) for item in items]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BacktestError(f"{path}: not a list of {{rule_id, subject, state}} ({type(exc).__name__}: {exc})") \
            from None
    return states


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


@dataclass(frozen=True)
class RuleSource:
    """Where a rule set comes from, so that a worker process loads it again (rules hold compiled
    conditions and zone trees, which do not travel between processes): a directory or a file (default:
    the deployed rules), or a file's text (with `replacing`: in place of that deployed file)."""

    deployed: Path
    path: Path | None = None
    text: str | None = None
    shown_as: str = "rules.yaml"
    replacing: str | None = None
    rule_id: str | None = None
    service_codes: frozenset[str] | None = None

    def load(self) -> RuleSet:
        if self.text is not None:
            return load_rule_text(self.text, self.shown_as, self.deployed, self.service_codes, self.rule_id,
                                  replacing=self.replacing)
        return load_rule_set(self.path, self.deployed, self.service_codes, self.rule_id)

    @property
    def is_deployed(self) -> bool:
        return self.text is None and (self.path is None or self.path.resolve() == self.deployed.resolve())


@dataclass
class BacktestPlan:
    """A backtest to run: a history, a rule set (and optionally a second one to compare with), whether to
    compare with the incidents the store holds, and the replay's parameters. `workers` > 1 splits the
    devices into shares replayed by as many processes (each rule set's rules that are `per_device`), and
    replays the other rules apart on just the readings they look at: the same incidents, sooner."""

    history: HistoryFilter
    rules: RuleSource
    rules_name: str = "rules"
    compare: RuleSource | None = None
    compare_name: str = "other"
    with_store: bool = False
    sweep_every: timedelta = timedelta(seconds=60)
    warmup: timedelta = timedelta(0)
    start_states: Sequence[tuple[str, str, Mapping[str, Any]]] = ()
    zone: tzinfo = UTC
    workers: int = 1


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


@contextmanager
def reading_connection(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection that can only read (every statement in a read-only transaction, explicit or not),
    whose times come back in `datetime.UTC`: psycopg gives a server's `Etc/UTC` as a ZoneInfo, whose
    datetimes cost twice as much to turn into a timestamp and twenty times as much to compare with a UTC
    one, some ten times per reading in a backtest."""
    with psycopg.connect(database_url, autocommit=True,
                         options="-c default_transaction_read_only=on -c TimeZone=UTC") as conn:
        yield conn


def run_plan(database_url: str, plan: BacktestPlan, profile_intervals: Mapping[str, float | None],
             progress: Progress | None = None, readings: Iterable[Reading] | None = None) -> BacktestReport:
    """Replays the plan's history (or the `readings` given, e.g. a capture's) through its rule sets and
    compares. Reads only (the registry, the telemetry, the store's incidents), in read-only transactions:
    the database can be a read replica."""
    history = plan.history
    start = history.since - plan.warmup
    replayed = HistoryFilter(start, history.until, history.devices, history.kinds, history.bbox)
    sets = {plan.rules_name: plan.rules.load()}
    if plan.compare is not None:
        sets[plan.compare_name] = plan.compare.load()
    with reading_connection(database_url) as conn:
        devices = DeviceDirectory(devices_by_id(conn))
        if readings is None:
            with conn.transaction():
                stored = StoredTelemetry(conn, replayed)
                if stored.device_ids == []:
                    raise BacktestError("no device matches the devices, kinds or box asked for")
                if not stored.has_readings():
                    raise BacktestError(f"no readings are stored between {start.isoformat()} and "
                                        f"{history.until.isoformat()}{_extent_hint(conn)}")
    if readings is not None or plan.workers <= 1:
        with reading_connection(database_url) as conn, conn.transaction():
            runs = [Backtest(name, rules, devices, profile_intervals, plan.start_states)
                    for name, rules in sets.items()]
            stream = readings if readings is not None else StoredTelemetry(conn, replayed)
            stats = replay(stream, runs, start, history.until, plan.sweep_every, progress=progress)
        found = {run.name: run.incidents for run in runs}
    else:
        found, stats = _replay_in_shares(database_url, plan, replayed, profile_intervals, progress)
    if stats.readings == 0:
        raise BacktestError(f"no readings between {start.isoformat()} and {history.until.isoformat()}")
    found = {name: in_range(incidents, history.since, history.until) for name, incidents in found.items()}
    rule_ids = sorted({rule.id for rules in sets.values() for rule in rules.rules})
    comparisons = []
    if plan.compare is not None:
        comparisons.append(compare(plan.rules_name, found[plan.rules_name], plan.compare_name,
                                   found[plan.compare_name]))
    if plan.with_store:
        own_ids = [rule.id for rule in sets[plan.rules_name].rules]
        with reading_connection(database_url) as conn:
            found[STORE] = stored_incidents(conn, own_ids, history.since, history.until)
        # Compared: what opened within the range (a backtest does not know what was open before it), and a
        # resolution after the range's end is still open at it, as the backtest sees it.
        comparisons.append(compare(plan.rules_name, _opened_within(found[plan.rules_name], history.since,
                                                                   history.until),
                                   STORE, _opened_within(found[STORE], history.since, history.until)))
    own = set(sets[plan.rules_name].by_id)
    summaries = {name: summarize(incidents, [r for r in rule_ids if name != STORE or r in own], plan.zone)
                 for name, incidents in found.items()}
    return BacktestReport(history.since, history.until, stats, rule_ids, found, summaries, comparisons)


def _opened_within(incidents: Iterable[WouldBeIncident], since: datetime, until: datetime) -> list[WouldBeIncident]:
    return [replace(i, resolved_at=None) if i.resolved_at is not None and i.resolved_at >= until else i
            for i in incidents if since <= i.opened_at < until]


def _extent_hint(conn: psycopg.Connection[Any]) -> str:
    latest = conn.execute(query("latest_telemetry_time")).fetchone()
    if latest is None or latest[0] is None:
        return " (the store holds no telemetry at all)"
    return f" (the latest stored reading is at {latest[0].isoformat()})"


# -- a backtest split over processes ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One process's part: the rules of each set that are per device (`per_device` True) on one share of
    the devices, or the others (False) on the readings they look at."""

    database_url: str
    history: HistoryFilter
    sources: tuple[tuple[str, RuleSource], ...]
    per_device: bool
    share: tuple[int, int] | None
    events: tuple[str, ...] | None
    sweep_every: timedelta
    start_states: tuple[tuple[str, str, Mapping[str, Any]], ...]
    profile_intervals: Mapping[str, float | None]
    index: int


def _run_job(job: _Job, reports: Any) -> tuple[dict[str, list[WouldBeIncident]], ReplayStats]:
    sets = {name: source.load() for name, source in job.sources}
    chosen = {name: RuleSet(tuple(r for r in rules.rules if r.per_device == job.per_device), rules.signature)
              for name, rules in sets.items()}
    last_report = [0.0]

    def progress(reached: datetime, replayed: int) -> None:
        now = time.monotonic()
        if reports is not None and now - last_report[0] >= 0.25:
            last_report[0] = now
            reports.put((job.index, reached, replayed))

    with reading_connection(job.database_url) as conn, conn.transaction():
        devices = DeviceDirectory(devices_by_id(conn))
        runs = [Backtest(name, rules, devices, job.profile_intervals, job.start_states)
                for name, rules in chosen.items()]
        stream = StoredTelemetry(conn, job.history, events=job.events, share=job.share)
        stats = replay(stream, runs, job.history.since, job.history.until, job.sweep_every, progress=progress)
    return {run.name: run.incidents for run in runs}, stats


def _replay_in_shares(database_url: str, plan: BacktestPlan, history: HistoryFilter,
                      profile_intervals: Mapping[str, float | None],
                      progress: Progress | None) -> tuple[dict[str, list[WouldBeIncident]], ReplayStats]:
    import concurrent.futures
    import multiprocessing

    sources = ((plan.rules_name, plan.rules),) + (((plan.compare_name, plan.compare),) if plan.compare else ())
    loaded = [source.load() for _, source in sources]
    others = [rule for rules in loaded for rule in rules.rules if not rule.per_device]
    events: tuple[str, ...] | None = None
    if others and all(rule.reading_events for rule in others):
        events = tuple(sorted({event for rule in others for event in rule.reading_events or ()}))

    def job(index: int, per_device: bool, share: tuple[int, int] | None, events: tuple[str, ...] | None) -> _Job:
        return _Job(database_url, history, sources, per_device, share, events, plan.sweep_every,
                    tuple(plan.start_states), dict(profile_intervals), index)

    jobs = [job(k, True, (k, plan.workers), None) for k in range(plan.workers)]
    if others:
        jobs.append(job(plan.workers, False, None, events))
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(
            min(len(jobs), plan.workers + 1), mp_context=context) as pool:
        reports = manager.Queue()
        futures = [pool.submit(_run_job, one, reports) for one in jobs]
        reached: dict[int, tuple[datetime, int]] = {}
        pending = set(futures)
        while pending:
            _, pending = concurrent.futures.wait(pending, timeout=0.25)
            while not reports.empty():
                index, at, count = reports.get()
                reached[index] = (at, count)
            shares = [reached.get(k) for k in range(plan.workers)]
            if progress is not None and all(shares):
                progress(min(s[0] for s in shares if s), sum(s[1] for s in shares if s))
        results = [future.result() for future in futures]
    found: dict[str, list[WouldBeIncident]] = {name: [] for name, _ in sources}
    for incidents, _ in results:
        for name, its in incidents.items():
            found[name].extend(its)
    for its in found.values():
        its.sort(key=lambda i: (i.opened_at, i.dedupe_key))
    share_stats = [stats for (_, stats), one in zip(results, jobs, strict=True) if one.per_device]
    firsts = [s.first for s in share_stats if s.first]
    lasts = [s.last for s in share_stats if s.last]
    stats = ReplayStats(sum(s.readings for s in share_stats), max(s.sweeps for s in share_stats),
                        min(firsts) if firsts else None, max(lasts) if lasts else None,
                        time.perf_counter() - started)
    if progress is not None:
        progress(history.until, stats.readings)
    return found, stats
