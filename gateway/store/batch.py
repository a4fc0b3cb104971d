"""One batch, one transaction: telemetry rows, dead-letter rows and device upkeep commit together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from gateway.ingest import IngestResult
from gateway.store.dead_letter import insert_rejections
from gateway.store.devices import touch_devices
from gateway.store.telemetry import insert_readings


@dataclass(frozen=True, slots=True)
class CommitStats:
    inserted: int
    duplicates: int
    rejected: int


async def commit_batch(
    pool: AsyncConnectionPool, result: IngestResult, kinds_by_profile: Mapping[str, str]
) -> CommitStats:
    seen: dict[str, tuple[str, str, str, datetime]] = {}
    for reading in result.readings:
        previous = seen.get(reading.device_id)
        if previous is None or reading.received_at > previous[3]:
            seen[reading.device_id] = (
                reading.device_id, reading.profile, kinds_by_profile[reading.profile], reading.received_at)
    async with pool.connection() as conn, conn.transaction():
        inserted = await insert_readings(conn, result.readings)
        await insert_rejections(conn, result.rejections)
        await touch_devices(conn, seen.values())
    return CommitStats(inserted, len(result.readings) - inserted, len(result.rejections))
