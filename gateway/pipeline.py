"""The ingest loop: source → decode → rules → one transaction per batch → acknowledge.

A message is acknowledged only after the transaction holding its row (or its dead-letter entry) has
committed. Batches commit one at a time and in order; the next batch is decoded and its rules evaluated
while the previous one commits, so the wait for the database (a disk flush, a network round trip) is not
time the interpreter stands idle. The periodic sweep's findings and states go through the same ordered
chain, between two batches, so a sweep never commits beside a batch and an older rule state never
overwrites a newer one.

While the database is unreachable the batch is retried and nothing is acknowledged, so the broker holds
the backlog. A batch the database refuses for its content (not its availability) is split into its
messages, and the ones that still fail go to the dead letter as `store_error`. Once asked to stop, the
loop flushes what it has received for at most `shutdown_grace_s`; what it could not commit by then is
given up unacknowledged (the broker redelivers it) and `run` says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg_pool import PoolTimeout

from gateway import metrics
from gateway.events import Batch, Fence, RawMessage, Rejection
from gateway.ingest import Ingestor, IngestResult
from gateway.rules.engine import EngineResult, RuleEngine, SweepFacts
from gateway.rules.model import SweepQuestions
from gateway.sources.base import Source
from gateway.store.batch import BatchRefused, BatchSink, CommitStats, StoreUnavailable
from gateway.store.cases import CaseChanges
from gateway.store.leases import Fenced

log = logging.getLogger(__name__)

Prepared = tuple[IngestResult, EngineResult | None]
_REDELIVERED = CommitStats(0, 0, 0)  # refused under a lease taken over; the source delivers it again


class SweepAuthority(Protocol):
    """Who may sweep, and what a sweep decides on, when there may be several replicas: the holder of the
    sweep lease, on what is committed."""

    def fence(self) -> Fence | None:
        """The sweep lease while this replica holds it; None: another replica sweeps."""

    async def committed_states(self, rule_ids: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
        """The sweeping rules' states as committed, to start from when the lease is gained."""

    async def facts(self, asked: SweepQuestions) -> SweepFacts:
        """The answers to the sweep's questions, from what is committed."""


class Pipeline:
    def __init__(
        self,
        source: Source,
        ingestor: Ingestor,
        sink: BatchSink,
        batch_max_size: int,
        batch_max_age_s: float,
        engine: RuleEngine | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shutdown_grace_s: float = 15.0,
        sweeps: SweepAuthority | None = None,
        fences: Callable[[Sequence[RawMessage]], Sequence[Fence]] = lambda batch: (),
        on_fenced: Callable[[Fenced, Sequence[RawMessage]], bool] | None = None,
        partition_of: Callable[[RawMessage], int | None] | None = None,
    ) -> None:
        """`sweeps`: None sweeps on what this replica saw (alone, or a test); `fences`: the leases a batch
        of readings commits under (an MQTT session of an active–standby pair, RabbitMQ partitions);
        `on_fenced`: told when one was taken over, the batch left unacknowledged, and True when the source
        delivers it again (a partition requeued) so the pipeline goes on; `partition_of`: the partition a
        message came from, noted with the rules' states."""
        self.source = source
        self.ingestor = ingestor
        self.sink = sink
        self.batch_max_size = batch_max_size
        self.batch_max_age_s = batch_max_age_s
        self.engine = engine
        self.clock = clock
        self.shutdown_grace_s = shutdown_grace_s
        self.database_ok = True
        self.gave_up = False  # something received was not committed when the loop stopped
        self._interrupt = asyncio.Event()  # stop, or a sweep is due: the source returns what it has
        self._sweep_due = False
        self._give_up: asyncio.Event | None = None
        self.sweeps = sweeps
        self.fences = fences
        self.on_fenced = on_fenced
        self.partition_of = partition_of
        self.device_partitions: dict[str, int] = {}  # the partition each device's readings last came from
        self._sweep_epoch: int | None = None  # the sweep lease's epoch the sweeping rules' states are from

    def request_sweep(self) -> None:
        """Runs the rules' sweep between two batches, its output committed in order with them."""
        self._sweep_due = True
        self._interrupt.set()

    async def run(self, stop: asyncio.Event) -> bool:
        """Until `stop`; True when everything received was committed and acknowledged."""
        self._give_up = asyncio.Event()
        watchdog = asyncio.create_task(self._watch(stop))
        committing: asyncio.Task[bool] | None = None
        try:
            while not stop.is_set():
                batch = await self.source.next_batch(self.batch_max_size, self.batch_max_age_s, self._interrupt)
                if not stop.is_set():
                    self._interrupt.clear()  # a sweep asked for from now on interrupts the next wait
                if batch:
                    committing = await self._chain(batch, self.prepare(batch), committing)
                if self._sweep_due and not stop.is_set():
                    committing = await self._sweep(committing)
            # Flush what was already received when the stop came; later arrivals stay unacknowledged and
            # the broker redelivers them to the next session.
            remaining = self.source.pending_count()
            while remaining > 0 and not self._give_up.is_set():
                batch = await self.source.next_batch(min(self.batch_max_size, remaining), 0.0, self._interrupt)
                if not batch:
                    break
                remaining -= len(batch)
                committing = await self._chain(batch, self.prepare(batch), committing)
            if committing is not None and not await committing:
                self.gave_up = True
        finally:
            if committing is not None and not committing.done():
                committing.cancel()
            watchdog.cancel()
        if self.source.pending_count() and self._give_up.is_set():
            self.gave_up = True
        return not self.gave_up

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._interrupt.set()
        await asyncio.sleep(self.shutdown_grace_s)
        assert self._give_up is not None
        self._give_up.set()

    async def _chain(self, batch: list[RawMessage], prepared: Prepared,
                     committing: asyncio.Task[bool] | None, sweep: Fence | None = None) -> asyncio.Task[bool]:
        """Starts `batch`'s commit once the previous one has committed (its preparation already ran while
        that one was committing). A batch whose predecessor was given up is not committed either."""
        if committing is not None and not await committing:
            return committing
        fences = (sweep,) if sweep is not None else tuple(self.fences(batch))
        return asyncio.create_task(self.commit(batch, *prepared, fences=fences))

    async def _sweep(self, committing: asyncio.Task[bool] | None) -> asyncio.Task[bool] | None:
        self._sweep_due = False
        if self.engine is None:
            return committing
        if self.sweeps is None:
            found = self.engine.sweep(self.clock())
            return await self._chain([], (IngestResult(), found), committing) if found else committing
        fence = self.sweeps.fence()
        if fence is None:
            self._sweep_epoch = None
            return committing  # another replica sweeps
        # Decided on what is committed: this replica's own batches first.
        if committing is not None and not await committing:
            return committing
        try:
            if fence.epoch != self._sweep_epoch:
                # The lease is new to this replica: start from the states its last holder committed.
                rule_ids = self.engine.sweeping_rule_ids
                sweeping = set(rule_ids)
                self.engine.take_over_states(lambda key: key[0] in sweeping,
                                             await self.sweeps.committed_states(rule_ids))
                self._sweep_epoch = fence.epoch
            now = self.clock()
            facts = await self.sweeps.facts(self.engine.sweep_questions(now))
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("sweep skipped: the database is unavailable", extra={"error": str(exc)})
            return committing
        found = self.engine.sweep(now, facts)
        return await self._chain([], (IngestResult(), found), committing, sweep=fence) if found else committing

    def prepare(self, batch: list[RawMessage]) -> Prepared:
        metrics.MESSAGES_RECEIVED.inc(len(batch))
        metrics.BATCH_SIZE.observe(len(batch))
        result = self.ingestor.process(batch)
        metrics.READINGS_DECODED.inc(len(result.readings))
        rules = self.engine.evaluate(result.readings, self.clock()) if self.engine else None
        return result, rules

    async def commit(self, batch: list[RawMessage], result: IngestResult, rules: EngineResult | None,
                     fences: Sequence[Fence] = ()) -> bool:
        """Commits, then acknowledges; False when it gave up (stopping, or fenced), leaving the batch
        unacknowledged."""
        stats = await self._commit_with_retry(batch, result, rules, fences)
        if stats is None:
            return False  # gave up while stopping: unacknowledged, so the broker redelivers
        if stats is _REDELIVERED:
            return True
        if batch:
            self.source.ack(batch)
        count_case_changes(stats.cases)
        metrics.BATCHES.inc()
        metrics.READINGS_STORED.inc(stats.inserted)
        metrics.READINGS_DUPLICATE.inc(stats.duplicates)
        for reason, count in Counter(r.reason for r in result.rejections).items():
            metrics.REJECTED.labels(reason).inc(count)
        for kind, count in result.not_readings.items():
            metrics.NOT_READINGS.labels(kind).inc(count)
        return True

    async def _attempt(self, batch: Batch) -> CommitStats | None:
        """One commit, abandoned (rolled back) if the shutdown grace runs out while it waits."""
        assert self._give_up is not None
        if self._give_up.is_set():
            return None
        attempt = asyncio.ensure_future(self.sink.commit(batch))
        giving_up = asyncio.ensure_future(self._give_up.wait())
        try:
            await asyncio.wait({attempt, giving_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            giving_up.cancel()
        if not attempt.done():
            attempt.cancel()
            return None
        return attempt.result()

    async def _commit_with_retry(self, batch: list[RawMessage], result: IngestResult,
                                 rules: EngineResult | None, fences: Sequence[Fence] = ()) -> CommitStats | None:
        whole = Batch(result.readings, result.rejections, result.devices_seen,
                      rules.findings if rules else (), rules.states if rules else {}, fences,
                      self._partitions(batch, result))
        delay = 0.2
        while True:
            started = time.perf_counter()
            try:
                stats = await self._attempt(whole)
                if stats is None:
                    break
            except Fenced as exc:
                return self._fenced(exc, batch)
            except StoreUnavailable as exc:
                self.database_ok = False
                metrics.COMMIT_FAILURES.inc()
                log.warning("database unavailable, batch not committed, retrying", extra={"error": str(exc)})
            except BatchRefused as exc:
                log.error("database refused a batch, committing its messages one by one", extra={"error": str(exc)})
                try:
                    return await self._commit_one_by_one(batch, result, rules, fences)
                except Fenced as fenced:
                    return self._fenced(fenced, batch)
                except StoreUnavailable:
                    self.database_ok = False  # what was committed already is a no-op when retried
            else:
                self.database_ok = True
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                return stats
            assert self._give_up is not None
            try:
                await asyncio.wait_for(self._give_up.wait(), timeout=delay)
            except TimeoutError:
                delay = min(delay * 2, 5.0)
        log.error("stopping with an uncommitted batch of %d messages; the broker will redeliver it", len(batch))
        return None

    def _partitions(self, batch: list[RawMessage], result: IngestResult) -> dict[str, int]:
        if self.partition_of is None or not batch:
            return {}
        partitions: dict[str, int] = {}
        start = 0
        for message, end in zip(batch, result.ends, strict=True):
            partition = self.partition_of(message)
            if partition is not None:
                for reading in result.readings[start:end]:
                    partitions[reading.device_id] = partition
            start = end
        self.device_partitions.update(partitions)
        return partitions

    def _fenced(self, exc: Fenced, batch: list[RawMessage]) -> CommitStats | None:
        """A lease the commit was made under has changed hands: another replica decides now. A sweep's
        output is dropped (the next holder sweeps again from what is committed); a batch of readings is
        left unacknowledged for the broker to deliver to the new holder."""
        metrics.COMMITS_FENCED.inc()
        if not batch:
            log.warning("sweep not committed: %s", exc)
            self._sweep_epoch = None
            return CommitStats(0, 0, 0)
        log.warning("batch of %d messages not committed: %s", len(batch), exc)
        if self.on_fenced is not None and self.on_fenced(exc, batch):
            return _REDELIVERED
        return None

    async def _commit_one_by_one(self, batch: list[RawMessage], result: IngestResult,
                                 rules: EngineResult | None, fences: Sequence[Fence] = ()) -> CommitStats:
        """Each message's readings, rejections and device upkeep on their own, as decoded the first time;
        then the rules' output, which refers to no single message."""
        inserted = duplicates = rejected = 0
        for message, single in result.per_message(batch):
            try:
                stats = await self.sink.commit(Batch(single.readings, single.rejections, single.devices_seen,
                                                     fences=fences))
            except BatchRefused as exc:
                refused = Rejection(message, "store_error", str(exc))
                stats = await self.sink.commit(Batch(rejections=[refused], fences=fences))
                metrics.REJECTED.labels("store_error").inc()
            inserted += stats.inserted
            duplicates += stats.duplicates
            rejected += stats.rejected
        cases = CaseChanges()
        if rules:
            cases = (await self.sink.commit(Batch(findings=rules.findings, states=rules.states, fences=fences,
                                                  partitions=self._partitions(batch, result)))).cases
        return CommitStats(inserted, duplicates, rejected, cases)


def count_case_changes(cases: CaseChanges) -> None:
    for rule_id in cases.opened:
        metrics.INCIDENTS_OPENED.labels(rule_id).inc()
    for rule_id in cases.resolved:
        metrics.INCIDENTS_RESOLVED.labels(rule_id).inc()
