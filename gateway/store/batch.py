"""One batch, one transaction: telemetry rows, dead-letter rows and device upkeep commit together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from gateway.ingest import IngestResult
from gateway.rules.engine import EngineResult
from gateway.store.cases import CaseChanges, apply_findings
from gateway.store.dead_letter import insert_rejections
from gateway.store.devices import DeviceSeen, touch_devices
from gateway.store.rule_state import save_rule_states
from gateway.store.telemetry import insert_readings


@dataclass(frozen=True, slots=True)
class CommitStats:
    inserted: int
    duplicates: int
    rejected: int
    cases: CaseChanges = field(default_factory=CaseChanges)


async def commit_batch(
    pool: AsyncConnectionPool, result: IngestResult, kinds_by_profile: Mapping[str, str],
    rules: EngineResult | None = None,
) -> CommitStats:
    seen: dict[str, DeviceSeen] = {}
    for reading in result.readings:
        device = seen.get(reading.device_id)
        if device is None:
            device = seen[reading.device_id] = DeviceSeen(
                reading.device_id, reading.profile, kinds_by_profile[reading.profile], reading.received_at)
        device.last_received_at = max(device.last_received_at, reading.received_at)
        if reading.extra:
            device.frames_lost += reading.extra.get("frames_lost", 0)
            if isinstance(f_cnt := reading.extra.get("f_cnt"), int):
                device.last_f_cnt = f_cnt
    async with pool.connection() as conn, conn.transaction():
        inserted = await insert_readings(conn, result.readings)
        await insert_rejections(conn, result.rejections)
        await touch_devices(conn, seen.values())
        cases = CaseChanges()
        if rules:
            cases = await apply_findings(conn, rules.findings)
            await save_rule_states(conn, rules.states)
    return CommitStats(inserted, len(result.readings) - inserted, len(result.rejections), cases)
