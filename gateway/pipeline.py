"""The ingest loop: source → decode → one transaction per batch → acknowledge.

A message is acknowledged only after the transaction holding its row (or its dead-letter entry) has
committed. Batches commit one at a time and in order; the next batch is decoded and its rules evaluated
while the previous one commits, so the wait for the database (a disk flush, a network round trip) is not
time the interpreter stands idle. While the database is unreachable the batch is retried and nothing is
acknowledged, so the broker holds the backlog. A batch the database refuses for its content (not its
availability) is split into single messages, and the ones that still fail go to the dead letter as
`store_error`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway import metrics
from gateway.events import RawMessage, Rejection
from gateway.ingest import Ingestor, IngestResult
from gateway.rules.engine import EngineResult, RuleEngine
from gateway.sources.mqtt import MqttSource
from gateway.store.batch import CommitStats, commit_batch
from gateway.store.cases import CaseChanges

log = logging.getLogger(__name__)

_UNAVAILABLE = (psycopg.OperationalError, PoolTimeout)


class Pipeline:
    def __init__(
        self,
        source: MqttSource,
        ingestor: Ingestor,
        pool: AsyncConnectionPool,
        kinds_by_profile: Mapping[str, str],
        batch_max_size: int,
        batch_max_age_s: float,
        engine: RuleEngine | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shutdown_grace_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.source = source
        self.ingestor = ingestor
        self.pool = pool
        self.kinds_by_profile = kinds_by_profile
        self.batch_max_size = batch_max_size
        self.batch_max_age_s = batch_max_age_s
        self.shutdown_grace_s = shutdown_grace_s
        self.database_ok = True

    async def run(self, stop: asyncio.Event) -> None:
        committing: asyncio.Task[bool] | None = None
        try:
            while not stop.is_set():
                batch = await self.source.next_batch(self.batch_max_size, self.batch_max_age_s, stop)
                if batch:
                    committing = await self._overlap(batch, committing, stop)
            # Flush what was already received when the stop came; later arrivals stay unacknowledged and
            # the broker redelivers them to the next session.
            remaining = self.source.pending_count()
            while remaining > 0:
                batch = await self.source.next_batch(min(self.batch_max_size, remaining), 0.0, stop)
                if not batch:
                    break
                remaining -= len(batch)
                committing = await self._overlap(batch, committing, stop)
        finally:
            if committing is not None:
                await committing

    async def _overlap(self, batch: list[RawMessage], committing: asyncio.Task[bool] | None,
                       stop: asyncio.Event) -> asyncio.Task[bool]:
        """Decodes and evaluates `batch` while the previous batch commits, then starts its commit.

        Batches still commit one after the other, in order: a batch whose predecessor was given up (the
        gateway stopping with the database away) is not committed either, and the broker redelivers both.
        """
        prepared = self.prepare(batch)
        if committing is not None and not await committing:
            return committing
        return asyncio.create_task(self.commit(batch, *prepared, stop))

    def prepare(self, batch: list[RawMessage]) -> tuple[IngestResult, EngineResult | None]:
        metrics.MESSAGES_RECEIVED.inc(len(batch))
        metrics.BATCH_SIZE.observe(len(batch))
        result = self.ingestor.process(batch)
        metrics.READINGS_DECODED.inc(len(result.readings))
        rules = self.engine.evaluate(result.readings, self.clock()) if self.engine else None
        return result, rules

    async def commit(self, batch: list[RawMessage], result: IngestResult, rules: EngineResult | None,
                     stop: asyncio.Event) -> bool:
        """Commits, then acknowledges; False when it gave up (stopping), leaving the batch unacknowledged."""
        stats = await self._commit_with_retry(batch, result, rules, stop)
        if stats is None:
            return False  # gave up while stopping: unacknowledged, so the broker redelivers
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

    async def commit_rule_output(self, rules: EngineResult, stop: asyncio.Event) -> None:
        """Findings of the periodic sweep, which come with no batch of messages."""
        stats = await self._commit_with_retry([], IngestResult(), rules, stop)
        if stats is not None:
            count_case_changes(stats.cases)

    async def _commit_with_retry(
        self, batch: list[RawMessage], result: IngestResult, rules: EngineResult | None, stop: asyncio.Event
    ) -> CommitStats | None:
        delay = 0.2
        give_up_at: float | None = None
        while True:
            started = time.perf_counter()
            try:
                stats = await commit_batch(self.pool, result, self.kinds_by_profile, rules)
            except _UNAVAILABLE as exc:
                self.database_ok = False
                metrics.COMMIT_FAILURES.inc()
                log.warning("database unavailable, batch not committed, retrying", extra={"error": str(exc)})
            except psycopg.Error as exc:
                log.error("database refused a batch, committing its messages one by one",
                          extra={"error": str(exc)})
                try:
                    return await self._commit_one_by_one(batch, rules)
                except _UNAVAILABLE:
                    self.database_ok = False  # what was committed already is a no-op when retried
            else:
                self.database_ok = True
                metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
                return stats
            if stop.is_set():
                give_up_at = give_up_at or time.monotonic() + self.shutdown_grace_s
                if time.monotonic() > give_up_at:
                    log.error("stopping with an uncommitted batch; the broker will redeliver it")
                    return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _commit_one_by_one(self, batch: list[RawMessage], rules: EngineResult | None) -> CommitStats:
        inserted = duplicates = rejected = 0
        for message in batch:
            single = self.ingestor.process([message])
            try:
                stats = await commit_batch(self.pool, single, self.kinds_by_profile)
            except _UNAVAILABLE:
                raise
            except psycopg.Error as exc:
                refused = Rejection(message, "store_error", str(exc).splitlines()[0])
                stats = await commit_batch(self.pool, IngestResult([], [refused]), self.kinds_by_profile)
                metrics.REJECTED.labels("store_error").inc()
            inserted += stats.inserted
            duplicates += stats.duplicates
            rejected += stats.rejected
        cases = CaseChanges()
        if rules:
            cases = (await commit_batch(self.pool, IngestResult(), self.kinds_by_profile, rules)).cases
        return CommitStats(inserted, duplicates, rejected, cases)


def count_case_changes(cases: CaseChanges) -> None:
    for rule_id in cases.opened:
        metrics.INCIDENTS_OPENED.labels(rule_id).inc()
    for rule_id in cases.resolved:
        metrics.INCIDENTS_RESOLVED.labels(rule_id).inc()
