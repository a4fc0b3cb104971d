"""The ingest loop's ordering, with in-memory doubles for the source, the decode stage and the store: the
next batch is prepared while the previous one commits, yet batches (and the sweep's output) commit and are
acknowledged in order; nothing after a batch given up is committed; a refused batch is split by message
without decoding it again; a stop with the database gone ends within the grace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from gateway.devices import DeviceDirectory
from gateway.events import Batch, Finding, RawMessage
from gateway.ingest import IngestLimits, Ingestor, IngestResult
from gateway.ingest.rate_limit import DeviceRateLimiter
from gateway.pipeline import Pipeline
from gateway.rules.engine import EngineResult, RuleEngine
from gateway.store.batch import BatchRefused, CommitStats, StoreUnavailable
from tests.support import REPO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class FakeSource:
    def __init__(self, batches: list[list[RawMessage]], stop: asyncio.Event) -> None:
        self.batches = batches
        self.stop = stop
        self.acked: list[str] = []

    async def start(self) -> None:
        pass

    def is_connected(self) -> bool:
        return True

    async def next_batch(self, max_size: int, max_age_s: float, interrupt: asyncio.Event) -> list[RawMessage]:
        await asyncio.sleep(0)
        if not self.batches:
            self.stop.set()
            return []
        return self.batches.pop(0)

    def pending_count(self) -> int:
        return 0

    def ack(self, messages: Iterable[RawMessage]) -> None:
        self.acked += [m.topic for m in messages]

    async def close(self) -> None:
        pass


class RecordingIngestor:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def process(self, batch: list[RawMessage]) -> IngestResult:
        self.events.append(f"prepare {batch[0].topic}")
        return IngestResult(ends=list(range(len(batch))))


class HeldSink:
    """Commits wait until released; batches whose first topic is in `unavailable` never get through."""

    def __init__(self, events: list[str], unavailable: frozenset[str] = frozenset()) -> None:
        self.events = events
        self.unavailable = unavailable
        self.release = asyncio.Event()

    async def commit(self, batch: Batch) -> CommitStats:
        name = _name(batch)
        self.events.append(f"commit {name}")
        await self.release.wait()
        if name in self.unavailable:
            raise StoreUnavailable("connection refused")
        self.events.append(f"committed {name}")
        return CommitStats(len(batch.readings), 0, 0)


def _name(batch: Batch) -> str:
    if batch.findings:
        return "sweep"
    return str(batch.rejections[0].message.topic) if batch.rejections else "?"


def message(topic: str) -> RawMessage:
    return RawMessage(topic, b"{}", NOW)


class NamedIngestor(RecordingIngestor):
    """Names each batch by its first topic, through a rejection the sink can read."""

    def process(self, batch: list[RawMessage]) -> IngestResult:
        from gateway.events import Rejection

        super().process(batch)
        return IngestResult(rejections=[Rejection(batch[0], "invalid_json", "")], ends=[0] * len(batch))


def pipeline_with(source: FakeSource, sink: Any, events: list[str], engine: Any = None,
                  grace_s: float = 5.0) -> Pipeline:
    return Pipeline(source, cast(Ingestor, NamedIngestor(events)), sink, 10, 0.0, engine,
                    lambda: NOW, shutdown_grace_s=grace_s)


async def _run_holding_first_commit(pipeline: Pipeline, sink: HeldSink, stop: asyncio.Event,
                                    events: list[str], stop_after_release: bool = False) -> bool:
    running = asyncio.create_task(pipeline.run(stop))

    async def prepared(topic: str) -> None:
        while f"prepare {topic}" not in events:
            await asyncio.sleep(0)

    # a's commit is held: b is prepared meanwhile, and its commit waits for a's
    await asyncio.wait_for(prepared("b"), timeout=5)
    for _ in range(10):
        await asyncio.sleep(0)  # whatever else could run now, does
    assert sorted(events) == ["commit a", "prepare a", "prepare b"]
    sink.release.set()
    if stop_after_release:  # SIGTERM, while the database is away
        stop.set()
    return await asyncio.wait_for(running, timeout=10)


def test_the_next_batch_is_prepared_while_one_commits_and_commits_follow_in_order() -> None:
    events: list[str] = []

    async def scenario() -> tuple[FakeSource, bool]:
        stop = asyncio.Event()
        source = FakeSource([[message("a")], [message("b")], [message("c")]], stop)
        sink = HeldSink(events)
        clean = await _run_holding_first_commit(pipeline_with(source, sink, events), sink, stop, events)
        return source, clean

    source, clean = asyncio.run(scenario())
    commits = [e for e in events if e.startswith("commit")]
    assert commits == ["commit a", "committed a", "commit b", "committed b", "commit c", "committed c"]
    assert source.acked == ["a", "b", "c"] and clean


def test_after_a_batch_given_up_the_next_is_neither_committed_nor_acknowledged() -> None:
    events: list[str] = []

    async def scenario() -> tuple[FakeSource, bool]:
        stop = asyncio.Event()
        source = FakeSource([[message("a")], [message("b")]], stop)
        sink = HeldSink(events, unavailable=frozenset({"a"}))
        clean = await _run_holding_first_commit(pipeline_with(source, sink, events, grace_s=0.3), sink, stop, events,
                                                stop_after_release=True)
        return source, clean

    source, clean = asyncio.run(scenario())
    assert "commit b" not in events and "committed a" not in events
    assert source.acked == [] and not clean


class SweepingEngine:
    """The rules' double: every sweep finds one thing."""

    def evaluate(self, readings: object, now: datetime) -> EngineResult:
        return EngineResult()

    def sweep(self, now: datetime) -> EngineResult:
        return EngineResult([Finding("absent", "C1", "open", now, "sensor_fault")], {("absent", "C1"): {"s": {}}})


def test_a_sweep_commits_between_batches_never_beside_one() -> None:
    events: list[str] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        source = FakeSource([[message("a")], [message("b")]], stop)
        sink = HeldSink(events)
        pipeline = pipeline_with(source, sink, events, engine=SweepingEngine())
        original = source.next_batch

        async def next_batch(max_size: int, max_age_s: float, interrupt: asyncio.Event) -> list[RawMessage]:
            batch = await original(max_size, max_age_s, interrupt)
            if batch and batch[0].topic == "a":
                pipeline.request_sweep()  # due while a is about to commit
            return batch

        source.next_batch = next_batch  # type: ignore[method-assign]
        running = asyncio.create_task(pipeline.run(stop))
        while "commit a" not in events:
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        assert "commit sweep" not in events  # it waits for a, as b will wait for it
        sink.release.set()
        assert await asyncio.wait_for(running, timeout=10)

    asyncio.run(scenario())
    commits = [e for e in events if e.startswith("commit")]
    assert commits == ["commit a", "committed a", "commit sweep", "committed sweep", "commit b", "committed b"]


def test_stopping_with_the_database_gone_gives_up_within_the_grace() -> None:
    class GoneSink:
        async def commit(self, batch: Batch) -> CommitStats:
            await asyncio.sleep(3600)  # a connection attempt that never answers
            raise AssertionError("unreachable")

    events: list[str] = []

    async def scenario() -> tuple[FakeSource, bool, float]:
        stop = asyncio.Event()
        source = FakeSource([[message("a")], [message("b")]], stop)
        pipeline = pipeline_with(source, GoneSink(), events, grace_s=0.5)
        running = asyncio.create_task(pipeline.run(stop))
        while "prepare b" not in events:
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stop.set()  # SIGTERM while a's commit waits for a database that is gone
        clean = await asyncio.wait_for(running, timeout=10)
        return source, clean, loop.time() - started

    source, clean, took = asyncio.run(scenario())
    assert not clean and source.acked == [] and took < 5


def test_a_refused_batch_is_split_by_message_without_decoding_again() -> None:
    """The rate limit counts a message once: splitting a refused batch reuses what was decoded."""
    from gateway.profiles.loader import load_profiles

    profiles = load_profiles(REPO / "device_profiles")
    calls: list[int] = []

    class CountingIngestor(Ingestor):
        def process(self, messages: Any) -> IngestResult:
            calls.append(len(messages))
            return super().process(messages)

    ingestor = CountingIngestor(profiles, DeviceDirectory(), lambda: NOW,
                                IngestLimits(65536, timedelta(minutes=10), timedelta(days=7)),
                                rate_limiter=DeviceRateLimiter(0.1, 10))  # one reading per 10 s window
    committed: list[list[str]] = []

    class RefusesBatchesOfTwo:
        async def commit(self, batch: Batch) -> CommitStats:
            if len(batch.readings) + len(batch.rejections) > 1:
                raise BatchRefused("value too long")
            committed.append([r.device_id for r in batch.readings] + [r.reason for r in batch.rejections])
            return CommitStats(len(batch.readings), 0, len(batch.rejections))

    def fix(device: str, second: int) -> RawMessage:
        payload = {"ts": (NOW - timedelta(minutes=5, seconds=-second)).isoformat(), "lat": 41.4, "lon": 2.1}
        return RawMessage(f"trucks/{device}/telemetry", json.dumps(payload).encode(), NOW)

    async def scenario() -> bool:
        stop = asyncio.Event()
        source = FakeSource([[fix("T1", 0), fix("T2", 0), fix("T1", 20)]], stop)
        pipeline = Pipeline(source, ingestor, RefusesBatchesOfTwo(), 10, 0.0, cast(RuleEngine, None), lambda: NOW)
        clean = await asyncio.wait_for(pipeline.run(stop), timeout=10)
        assert source.acked == ["trucks/T1/telemetry", "trucks/T2/telemetry", "trucks/T1/telemetry"]
        return clean

    assert asyncio.run(scenario())
    assert calls == [3]  # decoded once
    assert committed == [["T1"], ["T2"], ["T1"]]  # no message spent a second token of its device
