"""History as a source.

- A capture of MQTT messages: one JSON object per line, `{"topic": …, "payload": "…text…"}` or
  `{"topic": …, "payload_b64": "…"}`, with an optional `received_at` (ISO 8601; else the time read). For
  tests, backfills and benchmarks the same pipeline runs on a file instead of a broker (`ReplaySource`:
  there is no one to acknowledge to; `acked` counts what was committed, `exhausted` tells the file has
  been read); the rule lab decodes one through the decode stage.
- Stored telemetry (`StoredTelemetry`): a range of the `telemetry` table, streamed in device-time order,
  for the rule lab's backtests.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from gateway.events import RawMessage, Reading
from gateway.store.queries import query
from gateway.store.telemetry import stored_readings


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


@dataclass(frozen=True)
class HistoryFilter:
    """What part of the stored history to replay: a time range, and optionally devices, device kinds, or a
    box (west, south, east, north) the devices were registered in or passed through. A device selected
    is replayed whole over the range, so its rules see its full story."""

    since: datetime
    until: datetime
    devices: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("give times with a UTC offset")
        if self.until <= self.since:
            raise ValueError(f"empty range: {self.since.isoformat()} is not before {self.until.isoformat()}")
        if self.bbox is not None:
            west, south, east, north = self.bbox
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise ValueError("a box is west,south,east,north in degrees, west < east and south < north")


class StoredTelemetry:
    """Stored readings as a stream, in device-time order, a day at a time (the partitions' size), through
    a server-side cursor: memory is bounded by a fetch, not by the range. Reads only: it runs as well on
    a read replica."""

    def __init__(self, conn: psycopg.Connection[Any], history: HistoryFilter, stretch: timedelta = timedelta(days=1),
                 fetch_size: int = 5000, *, events: tuple[str, ...] | None = None,
                 share: tuple[int, int] | None = None) -> None:
        self.conn = conn
        self.history = history
        self.stretch = stretch
        self.fetch_size = fetch_size
        self.events = events  # only readings with one of these events
        self.share = share  # only the devices of share k of n (a backtest split over processes)
        self.device_ids = self._selected_devices()

    def _selected_devices(self) -> list[str] | None:
        history = self.history
        chosen: set[str] | None = set(history.devices) if history.devices else None
        if history.kinds:
            of_kinds = {row[0] for row in self.conn.execute(query("devices_of_kinds"), {"kinds": list(history.kinds)})}
            chosen = of_kinds if chosen is None else chosen & of_kinds
        if history.bbox is not None:
            west, south, east, north = history.bbox
            inside = {row[0] for row in self.conn.execute(query("devices_in_box"), {
                "west": west, "south": south, "east": east, "north": north,
                "since": history.since, "until": history.until})}
            chosen = inside if chosen is None else chosen & inside
        return sorted(chosen) if chosen is not None else None

    def has_readings(self) -> bool:
        """Whether any device has a reading in the range (one probe, not a count)."""
        row = self.conn.execute(query("history_has_readings"), {"since": self.history.since,
                                                                "until": self.history.until}).fetchone()
        return bool(row and row[0])

    def __iter__(self) -> Iterator[Reading]:
        if self.device_ids == []:
            return
        start = self.history.since
        while start < self.history.until:
            end = min(self.history.until, _next_boundary(start, self.stretch))
            yield from stored_readings(self.conn, start, end, self.device_ids, self.fetch_size, events=self.events,
                                       share=self.share)
            start = end


def _next_boundary(start: datetime, stretch: timedelta) -> datetime:
    """The next multiple of `stretch` after `start` since the epoch (UTC days for the default: one
    partition per query)."""
    step = stretch.total_seconds()
    t = start.timestamp()
    return datetime.fromtimestamp((t // step + 1) * step, UTC)

