"""The pipeline on another source without a change: a JSONL capture through the real decode stage, rules
and PostgreSQL; a capture line that is not a message is refused with its file and line."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.ingest import IngestLimits, Ingestor
from gateway.pipeline import Pipeline
from gateway.settings import Settings
from gateway.sources.replay import CaptureError, ReplaySource, read_capture
from gateway.store.batch import PostgresSink
from gateway.store.pool import open_pool
from tests.support import scalar, sql

BASE = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)


def capture(path: Path) -> Path:
    lines = [{"topic": f"trucks/T{i % 3}/telemetry", "payload": json.dumps(
        {"ts": (BASE + timedelta(seconds=i)).isoformat(), "lat": 41.39, "lon": 2.16})} for i in range(250)]
    lines.append({"topic": "trucks/T9/telemetry", "payload_b64": base64.b64encode(b"\xff not json").decode(),
                  "received_at": BASE.isoformat()})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_a_capture_replays_through_the_pipeline_into_the_store(settings: Settings, tmp_path: Path) -> None:
    gateway = Gateway(settings)  # only for its loaded profiles

    async def replay() -> ReplaySource:
        source = ReplaySource.from_file(capture(tmp_path / "capture.jsonl"))
        pool = await open_pool(settings.database_url)
        try:
            ingestor = Ingestor(gateway.profiles, gateway.devices, lambda: datetime.now(UTC), IngestLimits())
            pipeline = Pipeline(source, ingestor, PostgresSink(pool), 100, 0.0)
            stop = asyncio.Event()
            running = asyncio.create_task(pipeline.run(stop))
            await asyncio.wait_for(source.exhausted.wait(), timeout=30)
            while source.acked < 251:
                await asyncio.sleep(0.01)
            stop.set()
            assert await asyncio.wait_for(running, timeout=30)
        finally:
            await pool.close()
        return source

    source = asyncio.run(replay())
    assert source.acked == 251
    assert scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 250
    assert sql(settings.database_url, "SELECT reason, topic FROM rejected_messages") == [
        ("invalid_encoding", "trucks/T9/telemetry")]


def test_a_line_that_is_not_a_message_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"topic": "a", "payload": "{}"}\n\n{"payload": "no topic"}\n')
    with pytest.raises(CaptureError, match=r"bad.jsonl:3: not a message"):
        list(read_capture(path))
