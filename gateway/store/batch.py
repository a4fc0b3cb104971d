"""One batch, one transaction: telemetry rows, dead-letter rows, device upkeep, incident changes and the
rules' states commit together, or none of them does.

`BatchSink` is what the pipeline needs of a store; `PostgresSink` is the one it has. Errors come out as
kinds the pipeline acts on without knowing the database driver: `StoreUnavailable` (retry the same batch
later), `BatchRefused` (the content was refused: split the batch and dead-letter what fails) and
`Fenced` (a lease it was made under changed hands: another replica now commits for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.events import Batch
from gateway.store.cases import CaseChanges, apply_findings
from gateway.store.dead_letter import insert_rejections
from gateway.store.devices import touch_devices
from gateway.store.leases import check_fences
from gateway.store.organisations import Assigner
from gateway.store.rule_state import save_rule_states
from gateway.store.telemetry import insert_readings


@dataclass(frozen=True, slots=True)
class CommitStats:
    inserted: int
    duplicates: int
    rejected: int
    cases: CaseChanges = field(default_factory=CaseChanges)


class StoreUnavailable(Exception):
    """The database cannot be reached now; nothing of the batch was committed."""


class BatchRefused(Exception):
    """The database refused the batch for its content; nothing of it was committed."""


class BatchSink(Protocol):
    async def commit(self, batch: Batch) -> CommitStats: ...


class PostgresSink:
    def __init__(self, pool: AsyncConnectionPool, correlation_distance_m: float = 50.0,
                 correlation_window_s: float = 86400.0, assign: Assigner | None = None) -> None:
        self.pool = pool
        self.correlation_distance_m = correlation_distance_m
        self.correlation_window_s = correlation_window_s
        self.assign = assign

    async def commit(self, batch: Batch) -> CommitStats:
        try:
            return await commit_batch(self.pool, batch, self.correlation_distance_m, self.correlation_window_s,
                                      self.assign)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(str(exc)) from exc
        except psycopg.Error as exc:
            raise BatchRefused(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


async def commit_batch(pool: AsyncConnectionPool, batch: Batch, correlation_distance_m: float = 50.0,
                       correlation_window_s: float = 86400.0, assign: Assigner | None = None) -> CommitStats:
    """`correlation_*`: an incident a rule opens is linked to open citizen reports this near and recent;
    `assign` routes each incident opened to its organisation, with its deadlines."""
    async with pool.connection() as conn, conn.transaction():
        await check_fences(conn, batch.fences)  # first: a lease taken over meanwhile refuses it all
        # A reading already stored was committed with its findings: a redelivery must not count them again.
        # (Findings of readings committed apart, message by message, come without them: kept.)
        keys = {r.message_key for r in batch.readings} if batch.findings else set()
        keyed = any(f.message_key in keys for f in batch.findings)
        new_keys: set[bytes] | None = set() if keyed else None
        inserted = await insert_readings(conn, batch.readings, new_keys)
        findings = batch.findings if new_keys is None else \
            [f for f in batch.findings if f.message_key not in keys or f.message_key in new_keys]
        await insert_rejections(conn, batch.rejections)
        await touch_devices(conn, batch.devices_seen)
        cases = CaseChanges()
        if findings:
            cases = await apply_findings(conn, findings, correlation_distance_m=correlation_distance_m,
                                         correlation_window_s=correlation_window_s, assign=assign)
        if batch.states:
            await save_rule_states(conn, batch.states, batch.partitions)
    return CommitStats(inserted, len(batch.readings) - inserted, len(batch.rejections), cases)
