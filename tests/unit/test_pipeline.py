"""The ingest loop's ordering, with in-memory doubles for the source and the database: the next batch is
prepared while the previous one commits, yet batches commit and are acknowledged in order, and nothing
after a batch that was given up is committed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from gateway.events import RawMessage
from gateway.ingest import IngestResult
from gateway.pipeline import Pipeline
from gateway.rules.engine import EngineResult
from gateway.store.batch import CommitStats


class FakeSource:
    def __init__(self, batches: list[list[RawMessage]], stop: asyncio.Event) -> None:
        self.batches = batches
        self.stop = stop
        self.acked: list[str] = []

    async def next_batch(self, max_size: int, max_age_s: float, stop: asyncio.Event) -> list[RawMessage]:
        if not self.batches:
            self.stop.set()
            return []
        return self.batches.pop(0)

    def pending_count(self) -> int:
        return 0

    def ack(self, batch: list[RawMessage]) -> None:
        self.acked += [m.topic for m in batch]


class RecordingPipeline(Pipeline):
    """Commits are held until released, and may be given up, to observe what runs when."""

    def __init__(self, source: FakeSource, give_up: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(source, None, None, {}, 10, 0.0)  # type: ignore[arg-type]
        self.events: list[str] = []
        self.give_up = give_up
        self.release = asyncio.Event()

    def prepare(self, batch: list[RawMessage]) -> tuple[IngestResult, EngineResult | None]:
        self.events.append(f"prepare {batch[0].topic}")
        return IngestResult(), None

    async def _commit_with_retry(self, batch: list[RawMessage], result: IngestResult, rules: Any,
                                 stop: asyncio.Event) -> CommitStats | None:
        self.events.append(f"commit {batch[0].topic}")
        await self.release.wait()
        self.events.append(f"committed {batch[0].topic}")
        return None if batch[0].topic in self.give_up else CommitStats(len(batch), 0, 0)


def message(topic: str) -> RawMessage:
    return RawMessage(topic, b"{}", datetime.now(UTC))


async def _run(pipeline: RecordingPipeline, stop: asyncio.Event) -> None:
    running = asyncio.create_task(pipeline.run(stop))

    async def prepared(topic: str) -> None:
        while f"prepare {topic}" not in pipeline.events:
            await asyncio.sleep(0)

    # a's commit is held: b is prepared meanwhile, and its commit waits for a's
    await asyncio.wait_for(prepared("b"), timeout=5)
    for _ in range(10):
        await asyncio.sleep(0)  # whatever else could run now, does
    assert sorted(pipeline.events) == ["commit a", "prepare a", "prepare b"]
    pipeline.release.set()
    await asyncio.wait_for(running, timeout=5)


def test_the_next_batch_is_prepared_while_one_commits_and_commits_follow_in_order() -> None:
    async def scenario() -> RecordingPipeline:
        stop = asyncio.Event()
        source = FakeSource([[message("a")], [message("b")], [message("c")]], stop)
        pipeline = RecordingPipeline(source)
        await _run(pipeline, stop)
        return pipeline

    pipeline = asyncio.run(scenario())
    commits = [e for e in pipeline.events if e.startswith("commit")]
    assert commits == ["commit a", "committed a", "commit b", "committed b", "commit c", "committed c"]
    assert pipeline.source.acked == ["a", "b", "c"]  # type: ignore[attr-defined]


def test_after_a_batch_given_up_the_next_is_neither_committed_nor_acknowledged() -> None:
    async def scenario() -> RecordingPipeline:
        stop = asyncio.Event()
        source = FakeSource([[message("a")], [message("b")]], stop)
        pipeline = RecordingPipeline(source, give_up={"a"})
        await _run(pipeline, stop)
        return pipeline

    pipeline = asyncio.run(scenario())
    assert "commit b" not in pipeline.events and pipeline.events[-1] == "committed a"
    assert pipeline.source.acked == []  # type: ignore[attr-defined]
