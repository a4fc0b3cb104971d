"""A capture of MQTT messages as a source: one JSON object per line, `{"topic": …, "payload": "…text…"}`
or `{"topic": …, "payload_b64": "…"}`, with an optional `received_at` (ISO 8601; else the time read).

For tests, backfills and benchmarks: the same pipeline runs on a file instead of a broker. There is no
one to acknowledge to; `acked` counts what was committed, and `exhausted` tells the file has been read.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.events import RawMessage


class CaptureError(ValueError):
    """A line of a capture that is not a message, with the file and line."""


def read_capture(path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[RawMessage]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                topic = item["topic"]
                payload = (base64.b64decode(item["payload_b64"], validate=True) if "payload_b64" in item
                           else str(item["payload"]).encode())
                received = datetime.fromisoformat(item["received_at"]) if "received_at" in item else clock()
            except (ValueError, KeyError, TypeError) as exc:
                raise CaptureError(f"{path}:{number}: not a message ({type(exc).__name__}: {exc})") from None
            if received.tzinfo is None:
                received = received.replace(tzinfo=UTC)
            yield RawMessage(str(topic), payload, received)


class ReplaySource:
    def __init__(self, messages: Iterable[RawMessage]) -> None:
        self._messages = iter(messages)
        self.exhausted = asyncio.Event()
        self.acked = 0

    @classmethod
    def from_file(cls, path: Path) -> ReplaySource:
        return cls(read_capture(path))

    async def start(self) -> None:
        pass

    def is_connected(self) -> bool:
        return not self.exhausted.is_set()

    async def next_batch(self, max_size: int, max_age_s: float, interrupt: asyncio.Event) -> list[RawMessage]:
        batch: list[RawMessage] = []
        for message in self._messages:
            batch.append(message)
            if len(batch) >= max_size:
                break
        else:
            self.exhausted.set()
        if not batch:
            # Nothing more to read: wait like a quiet broker would, until interrupted.
            await interrupt.wait()
        await asyncio.sleep(0)  # a file reads faster than anything commits: let the commit run
        return batch

    def pending_count(self) -> int:
        return 0  # read on demand: nothing is held between batches

    def ack(self, messages: Iterable[RawMessage]) -> None:
        self.acked += sum(1 for _ in messages)

    async def close(self) -> None:
        pass
