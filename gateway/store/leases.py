"""Leases in PostgreSQL: one replica at a time holds each (the sweeps, an MQTT session, a RabbitMQ partition)
until it expires, on the database's clock. The epoch grows each time a lease changes hands; a commit made
under a lease locks it and checks the epoch in its own transaction (`check_fences`), so a replica that lost
a lease cannot commit for it, however late its commit comes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

from gateway.events import Fence
from gateway.store.queries import query


class Fenced(Exception):
    """A commit made under leases that have changed hands since: nothing of it was committed."""

    def __init__(self, lost: Sequence[Fence]) -> None:
        super().__init__("no longer held: " + ", ".join(f"{f.lease} (epoch {f.epoch})" for f in lost))
        self.lost = tuple(lost)


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    holder: str | None
    epoch: int
    expires_at: datetime


async def acquire_lease(conn: AsyncConnection, name: str, holder: str, ttl_s: float) -> int | None:
    """Takes or renews `name` for `ttl_s`: its epoch, or None while another replica holds it."""
    async with conn.cursor() as cur:
        await cur.execute(query("acquire_lease"), {"name": name, "holder": holder, "ttl_s": ttl_s})
        row = await cur.fetchone()
    return int(row[0]) if row else None


async def take_dead_lease(conn: AsyncConnection, name: str, holder: str, dead: str, ttl_s: float) -> int | None:
    """Takes `name` over from `dead`, known to be gone, without waiting for the lease to expire."""
    async with conn.cursor() as cur:
        await cur.execute(query("take_dead_lease"), {"name": name, "holder": holder, "dead": dead, "ttl_s": ttl_s})
        row = await cur.fetchone()
    return int(row[0]) if row else None


async def release_lease(conn: AsyncConnection, name: str, holder: str) -> None:
    """Lets `name` go at once (a clean stop): another replica need not wait for it to expire."""
    await conn.execute(query("release_lease"), {"name": name, "holder": holder})


async def lease_holder(conn: AsyncConnection, name: str) -> LeaseHolder | None:
    async with conn.cursor() as cur:
        await cur.execute(query("lease_holder"), (name,))
        row = await cur.fetchone()
    return LeaseHolder(row[0], int(row[1]), row[2]) if row else None


async def check_fences(conn: AsyncConnection, fences: Sequence[Fence]) -> None:
    """Inside a commit's transaction: locks the leases it is made under until it commits, and raises
    `Fenced` if one of them is no longer held by the same holder at the same epoch."""
    if not fences:
        return
    async with conn.cursor() as cur:
        await cur.execute(query("lock_fences"), (sorted({f.lease for f in fences}),))
        held = {name: (holder, int(epoch)) for name, holder, epoch in await cur.fetchall()}
    lost = [f for f in fences if held.get(f.lease) != (f.holder, f.epoch)]
    if lost:
        raise Fenced(lost)


async def heartbeat(conn: AsyncConnection, replica_id: str) -> None:
    await conn.execute(query("replica_heartbeat"), (replica_id,))


async def forget_replica(conn: AsyncConnection, replica_id: str) -> None:
    await conn.execute(query("replica_gone"), (replica_id,))


async def live_replicas(conn: AsyncConnection, within_s: float) -> list[str]:
    async with conn.cursor() as cur:
        await cur.execute(query("live_replicas"), (within_s,))
        return [row[0] for row in await cur.fetchall()]
