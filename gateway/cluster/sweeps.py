"""The sweeps decided from the database, by the one replica that holds the sweep lease: silence from each
device's latest reading as committed, collections from the lifts committed, whichever replica received
them. A replica that gains the lease starts from the sweeping rules' states as committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gateway.cluster.lease import LeaseKeeper
from gateway.events import Fence
from gateway.rules.engine import SweepFacts
from gateway.rules.model import SweepQuestions
from gateway.store.rule_state import load_rule_states_of
from gateway.store.sweeps import first_readings_after, last_readings, lifts_since

SWEEP_LEASE = "sweeps"


class DatabaseSweeps:
    def __init__(self, pool: AsyncConnectionPool, lease: LeaseKeeper) -> None:
        self.pool = pool
        self.lease = lease

    def fence(self) -> Fence | None:
        return self.lease.held()

    async def committed_states(self, rule_ids: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
        async with self.pool.connection() as conn:
            return await load_rule_states_of(conn, rule_ids)

    async def facts(self, asked: SweepQuestions) -> SweepFacts:
        async with self.pool.connection() as conn:
            return SweepFacts(await last_readings(conn), await first_readings_after(conn, asked.readings_after),
                              await lifts_since(conn, asked.lifts_since))
