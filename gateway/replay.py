"""Replaying the dead letter: stored messages re-run through the current profiles and device registry.

After a device is registered or a profile fixed, `wastegate deadletter replay` decodes the chosen rows with
the gateway's own decode stage and commits what now becomes telemetry. Each row records the outcome of its
replay, in the transaction that holds its lock:

- `stored` (it became readings) or `not_reading` (a join, an ack…): it leaves the dead letter and no later
  replay takes it again;
- `rejected`: it stays, in its one row, with the reason it failed this time.

Exactly once: the readings are committed before the outcomes, and telemetry is idempotent on
`(device_id, time, message_key)` with the same key and time as a live message would have had, so a replay
interrupted in between and run again stores nothing twice. No dead-letter row is ever inserted by a replay.

Replayed readings are not evaluated by the rules. The rules of a running `serve` keep each device's state in
memory and ignore readings older than the last one they evaluated for it; a replay is a separate process
with messages from the past, and evaluating them here would open incidents for what is long over.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from gateway.devices import DeviceDirectory
from gateway.events import Batch, RawMessage, Reading, Rejection
from gateway.ingest import IngestLimits, Ingestor, devices_seen
from gateway.ingest.frame_counters import FrameCounters
from gateway.profiles.loader import ProfileSet
from gateway.store.batch import CommitStats, commit_batch
from gateway.store.dead_letter import DeadLetterFilter, ReplayMark, StoredMessage, lock_for_replay, record_replays
from gateway.store.devices import load_devices

# Rows locked, decoded and committed together: one transaction each.
CHUNK = 500

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime) -> datetime:
    """`2026-11-23`, `2026-11-23T08:00`, `2026-11-23T08:00:00+01:00` (UTC when no offset is given), or a
    time ago: `90m`, `2h`, `1d12h`, `2w`."""
    value = text.strip()
    parts = _RELATIVE.findall(value.lower())
    if parts and "".join(n + u for n, u in parts) == value.lower():
        return now - timedelta(seconds=sum(float(n) * _UNIT_S[u] for n, u in parts))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: write 2026-11-23, 2026-11-23T08:00:00Z, or a time ago such as 30m, 2h, 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _NoFrameCounting(FrameCounters):
    """A replayed uplink is one the live gateway already counted as lost (it never reached telemetry), and
    the replayed rows of a device are only those that failed: the gaps between them are not losses."""

    def observe(self, device_id: str, f_cnt: int) -> int:
        return 0


class _ReceivedClock:
    """The decode stage's `now` is the time each message was received, not the time of the replay: the
    device-clock window judges the device's clock against its arrival, as it did live, so a week-old
    message is not refused as too old merely for having waited in the dead letter."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def build_ingestor(profiles: ProfileSet, devices: DeviceDirectory, limits: IngestLimits,
                   clock: Callable[[], datetime]) -> Ingestor:
    """The gateway's decode stage as gateway/app.py builds it, without the rate limit: `rate_limited`
    messages are among those worth replaying, and a replay is not a flood from the device."""
    return Ingestor(profiles, devices, clock, limits, frame_counters=_NoFrameCounting())


async def _commit(pool: AsyncConnectionPool, readings: Sequence[Reading], kinds: dict[str, str]) -> CommitStats:
    # The one call into the batch writer. No rejections: a replay updates its rows instead of inserting.
    # No frame counter: an old uplink's counter would move the device's last_f_cnt backwards, and the
    # next live uplink after a restart would count the difference as lost.
    seen = [replace(device, last_f_cnt=None) for device in devices_seen(readings, kinds)]
    return await commit_batch(pool, Batch(readings=readings, devices_seen=seen))


@dataclass
class ReplayReport:
    dry_run: bool
    selected: int = 0
    stored: int = 0
    not_reading: int = 0
    readings: int = 0
    inserted: int = 0
    already_stored: int = 0
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    not_reading_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_reasons(self) -> Counter[str]:
        return Counter(rejection.reason for _, rejection in self.rejected)


def _decode(ingestor: Ingestor, clock: _ReceivedClock, row: StoredMessage,
            report: ReplayReport) -> tuple[ReplayMark | None, list[Reading]]:
    report.selected += 1
    if row.truncated:
        # Only the first bytes of an oversized payload were kept: decoding them would read a different message.
        report.skipped.append((row.id, f"only {len(row.payload)} of its {row.payload_size} bytes were kept"))
        return None, []
    clock.now = row.received_at
    result = ingestor.process([RawMessage(row.topic, row.payload, row.received_at)])
    if result.rejections:
        rejection = result.rejections[0]
        report.rejected.append((row.id, rejection))
        # Readings of the message's other records are stored all the same, as the live gateway stores them.
        return ReplayMark(row.id, "rejected", rejection), result.readings
    if result.readings:
        report.stored += 1
        return ReplayMark(row.id, "stored"), result.readings
    report.not_reading += 1
    report.not_reading_kinds.update(result.not_readings)
    return ReplayMark(row.id, "not_reading"), []


async def replay(pool: AsyncConnectionPool, profiles: ProfileSet, selection: DeadLetterFilter, limits: IngestLimits,
                 *, limit: int | None = None, dry_run: bool = False,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ReplayReport:
    """Replays the selected rows still in the dead letter (at most `limit`), oldest first.

    `pool` needs two connections: one holds the rows' locks while the other commits their readings."""
    async with pool.connection() as conn:
        devices = DeviceDirectory(await load_devices(conn))
    received = _ReceivedClock()
    ingestor = build_ingestor(profiles, devices, limits, received)
    kinds = {p.name: p.config.kind for p in profiles.profiles}
    report = ReplayReport(dry_run)
    after_id = 0
    while limit is None or report.selected < limit:
        size = CHUNK if limit is None else min(CHUNK, limit - report.selected)
        async with pool.connection() as conn, conn.transaction(force_rollback=dry_run):
            rows = await lock_for_replay(conn, selection, after_id, size)
            if not rows:
                break
            after_id = rows[-1].id
            marks: list[ReplayMark] = []
            readings: list[Reading] = []
            for row in rows:
                mark, decoded = _decode(ingestor, received, row, report)
                readings += decoded
                if mark is not None:
                    marks.append(mark)
            report.readings += len(readings)
            if dry_run:
                continue
            # Readings first, outcomes second: if this stops in between, the rows are still pending and the
            # next replay stores their readings again as no-ops.
            if readings:
                stats = await _commit(pool, readings, kinds)
                report.inserted += stats.inserted
                report.already_stored += stats.duplicates
            await record_replays(conn, marks, clock())
    return report
