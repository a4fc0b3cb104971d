"""Backtests for the API and the console, as jobs: each runs in a process of its own, at a lower priority,
so a long replay never holds the gateway's interpreter (ingestion, the API) nor its event loop. The job
list is in memory: a restart forgets jobs (their results can be run again), and keeps the last few.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from gateway.lab.backtest import BacktestError, BacktestPlan, RuleSource, run_plan
from gateway.sources.replay import HistoryFilter

log = logging.getLogger(__name__)

JobStatus = Literal["running", "done", "failed"]
KEPT = 20  # finished jobs remembered
RUNNING_AT_ONCE = 2
TIME_LIMIT_S = 3600.0  # a job still running after this is stopped (a year of a city takes minutes)


class JobsBusy(Exception):
    """As many backtests are running as may run at once."""


@dataclass
class Job:
    id: str
    owner: str
    created_at: datetime
    since: datetime
    until: datetime
    status: JobStatus = "running"
    reached: datetime | None = None  # device time the replay has reached
    readings: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    finished_at: datetime | None = None
    _process: Any = field(default=None, repr=False)

    @property
    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        if self.reached is None:
            return 0.0
        span = (self.until - self.since).total_seconds()
        return max(0.0, min(1.0, (self.reached - self.since).total_seconds() / span)) if span > 0 else 0.0

    def as_json(self, with_result: bool = True) -> dict[str, Any]:
        found: dict[str, Any] = {
            "id": self.id, "status": self.status, "owner": self.owner, "created_at": self.created_at.isoformat(),
            "since": self.since.isoformat(), "until": self.until.isoformat(), "progress": round(self.progress, 3),
            "readings": self.readings, "reached": self.reached.isoformat() if self.reached else None,
        }
        if self.error is not None:
            found["error"] = self.error
        if with_result and self.result is not None:
            found["result"] = self.result
        return found


def _work(database_url: str, plan: BacktestPlan, intervals: Mapping[str, float | None], reports: Any) -> None:
    """In the job's own process."""
    with contextlib.suppress(OSError):
        os.nice(10)  # the gateway's ingestion first
    last = [datetime.min.replace(tzinfo=UTC)]

    def progress(reached: datetime, replayed: int) -> None:
        if (reached - last[0]).total_seconds() >= 60 or reached >= plan.history.until:
            last[0] = reached
            reports.put(("progress", reached, replayed))

    try:
        report = run_plan(database_url, plan, intervals, progress)
        reports.put(("done", report.as_json(), report.stats.readings))
    except BacktestError as exc:
        reports.put(("failed", str(exc), 0))
    except Exception as exc:  # logged here with its trace; whoever asked is told the kind, not the detail
        log.exception("backtest failed")
        reports.put(("failed", f"the backtest failed ({type(exc).__name__}); the server's log has the details",
                     0))


class BacktestJobs:
    def __init__(self, database_url: str, intervals: Mapping[str, float | None]) -> None:
        self.database_url = database_url
        self.intervals = dict(intervals)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")

    def submit(self, plan: BacktestPlan, owner: str) -> Job:
        with self._lock:
            running = [job for job in self._jobs.values() if job.status == "running"]
            if len(running) >= RUNNING_AT_ONCE:
                raise JobsBusy(f"{len(running)} backtests are running; try again when one has finished")
            job = Job(uuid.uuid4().hex[:12], owner, datetime.now(UTC), plan.history.since, plan.history.until)
            self._jobs[job.id] = job
            self._forget_old()
        plan.workers = 1  # one core at most: the other stays the gateway's
        reports = self._context.Queue()
        process = self._context.Process(target=_work, args=(self.database_url, plan, self.intervals, reports),
                                        name=f"wastegate-backtest-{job.id}", daemon=True)
        job._process = process
        try:
            process.start()
        except Exception:
            job._process = None
            self._finish(job, "failed", error="the backtest's process could not start")
            raise
        threading.Thread(target=self._follow, args=(job, reports), name=f"backtest-{job.id}", daemon=True).start()
        return job

    def _follow(self, job: Job, reports: Any) -> None:
        started = time.monotonic()
        while True:
            process = job._process
            if process is not None and time.monotonic() - started > TIME_LIMIT_S:
                process.terminate()
                self._finish(job, "failed", error=f"stopped after {TIME_LIMIT_S / 60:.0f} minutes: give a shorter "
                                                  "range, or use `wastegate rules backtest`")
                return
            try:
                kind, value, readings = reports.get(timeout=5)
            except queue.Empty:  # is the process still there?
                if process is None or process.is_alive():
                    continue
                try:  # it may have answered just before it ended
                    kind, value, readings = reports.get_nowait()
                except queue.Empty:
                    self._finish(job, "failed", error="the backtest's process ended without an answer")
                    return
            if kind == "progress":
                job.reached, job.readings = value, readings
            elif kind == "done":
                job.readings = readings
                self._finish(job, "done", result=value)
                return
            else:
                self._finish(job, "failed", error=str(value))
                return

    def _finish(self, job: Job, status: JobStatus, *, result: dict[str, Any] | None = None,
                error: str | None = None) -> None:
        job.result, job.error, job.status = result, error, status
        job.finished_at = datetime.now(UTC)
        if job._process is not None:
            job._process.join(timeout=5)
            job._process = None

    def _forget_old(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.status != "running"), key=lambda j: j.created_at)
        for job in finished[:-KEPT] if len(finished) > KEPT else []:
            del self._jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)



CANDIDATE, DEPLOYED = "candidate", "deployed"


def lab_plan(deployed: Path, service_codes: frozenset[str] | None, *, since: datetime, until: datetime,
             rules_yaml: str | None = None, file: str | None = None, rule: str | None = None,
             compare_with_deployed: bool = True, with_store: bool | None = None, devices: tuple[str, ...] = (),
             kinds: tuple[str, ...] = (), bbox: tuple[float, float, float, float] | None = None,
             sweep_every: timedelta = timedelta(seconds=60), warmup: timedelta = timedelta(0)) -> BacktestPlan:
    """A backtest as the API and the console ask for one, checked now (BacktestError with every problem
    as file:line: reason) so that a job only starts on rules that load:

    - `rules_yaml` (the editor's text) in place of the deployed `file`, or alone when `file` is not one,
      compared with the deployed rules unless told not to;
    - else `file`, one deployed file alone;
    - else the deployed rules, compared with the store's incidents unless told not to.
    """
    names = {path.name for path in deployed.glob("*.yaml")}
    if file is not None and (file not in names or "/" in file):
        raise BacktestError(f"{file!r} is not one of the deployed rule files ({', '.join(sorted(names))})")
    history = HistoryFilter(since, until, devices, kinds, bbox)
    if rules_yaml is not None:
        candidate = RuleSource(deployed, text=rules_yaml, shown_as=file or "rules.yaml", replacing=file,
                               rule_id=rule, service_codes=service_codes)
        candidate.load()
        other = RuleSource(deployed, rule_id=rule, service_codes=service_codes) if compare_with_deployed else None
        if other is not None:
            other.load()
        return BacktestPlan(history, candidate, CANDIDATE, other, DEPLOYED, bool(with_store), sweep_every, warmup)
    source = RuleSource(deployed, deployed / file if file else None, rule_id=rule, service_codes=service_codes)
    source.load()
    store = source.is_deployed if with_store is None else with_store
    return BacktestPlan(history, source, DEPLOYED if source.is_deployed else file or CANDIDATE, with_store=store,
                        sweep_every=sweep_every, warmup=warmup)
