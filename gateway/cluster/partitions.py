"""RabbitMQ partitions spread over the live replicas. Each replica heartbeats into `replicas`; the owner of
partition p is the live replica with the highest hash of (replica, p) (rendezvous hashing: a fair share
each, and only the partitions of a replica that joins or leaves move). A replica consumes a partition only
while it holds that partition's lease: it takes the lease, loads the partition's rule states as committed,
then subscribes; it gives a partition up by dropping what it received of it uncommitted (the broker
requeues it, in order), then letting the lease go. Every commit is fenced with the epochs of the
partitions its messages came from, so a replica that lost one can no longer commit for it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.cluster.lease import LeaseKeeper, holder_is_dead
from gateway.events import Fence, RawMessage
from gateway.sources.amqp import AmqpSource, SourceUnavailable
from gateway.store.leases import forget_replica, heartbeat, live_replicas

log = logging.getLogger(__name__)


def owner(partition: int, replicas: Sequence[str]) -> str:
    """The replica that should consume `partition`: the highest hash of (replica, partition)."""
    return max(replicas, key=lambda replica: hashlib.blake2b(f"{replica}|{partition}".encode(), digest_size=8).digest())


def lease_name(partition: int) -> str:
    return f"partition:{partition}"


class PartitionKeeper:
    def __init__(self, pool: AsyncConnectionPool, source: AmqpSource, replica_id: str, lease_s: float,
                 partitions: int, load_states: Callable[[int], Awaitable[None]]) -> None:
        """`load_states(p)`: puts partition p's committed rule states in place, before its first message."""
        self.pool = pool
        self.source = source
        self.replica_id = replica_id
        self.lease_s = lease_s
        self.partitions = partitions
        self.load_states = load_states
        self.leases = {p: LeaseKeeper(pool, lease_name(p), replica_id, lease_s) for p in range(partitions)}
        self.held: set[int] = set()
        self._abandoned: set[int] = set()  # given up after a refused commit, until the lease is let go
        self._giving_up: set[asyncio.Task[None]] = set()

    async def step(self) -> None:
        """One round: heartbeat, work out this replica's share, give up what is no longer its, renew what
        it keeps, take what is free."""
        for partition in sorted(self.source.channels_lost & self.held):
            await self.give_up(partition)  # the broker closed its channel: taken again below if still ours
        try:
            async with self.pool.connection() as conn:
                await heartbeat(conn, self.replica_id)
                live = [r for r in await live_replicas(conn, self.lease_s) if not holder_is_dead(r, self.replica_id)]
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("partitions not rebalanced: the database is unavailable", extra={"error": str(exc)})
            # Cut off from the database: a partition whose lease may have gone to another replica is not
            # consumed here any longer (single active consumer would keep it from the new holder).
            for partition in sorted(p for p in self.held if self.leases[p].held() is None):
                await self.give_up(partition)
            return
        if self.replica_id not in live:
            live.append(self.replica_id)
        mine = {p for p in range(self.partitions) if owner(p, live) == self.replica_id}
        for partition in sorted(self.held - mine):
            await self.give_up(partition)
        for partition in sorted(self.held & mine):
            if await self.leases[partition].try_once() is None:
                await self.give_up(partition)
        for partition in sorted(mine - self.held - self._abandoned):
            if self.source.lost.is_set():
                break
            if await self.leases[partition].try_once() is None:
                continue  # its last holder has not let it go yet
            try:
                await self.load_states(partition)
                await self.source.consume(partition)
            except (psycopg.Error, PoolTimeout, SourceUnavailable) as exc:
                log.warning("partition %d not taken", partition, extra={"error": str(exc)})
                await self.source.stop_consuming(partition)
                await self.leases[partition].release()
                continue
            self.held.add(partition)
        if self.held:
            log.debug("consuming partitions %s", sorted(self.held))

    async def run(self) -> None:
        """Rounds every third of the lease's time, until cancelled. A round that fails unexpectedly is
        logged and the next one tries again: heartbeats and renewals must not stop with it."""
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("partition round failed")
            await asyncio.sleep(self.lease_s / 3)

    async def give_up(self, partition: int) -> None:
        await self.source.stop_consuming(partition)
        self.held.discard(partition)
        await self.leases[partition].release()
        self._abandoned.discard(partition)

    def fences(self, batch: Iterable[RawMessage]) -> tuple[Fence, ...]:
        """The leases a batch's commit is made under: those of the partitions its messages came from. An
        abandoned partition's fence can match no lease, so what is left of it is refused too."""
        fences: dict[int, Fence] = {}
        for message in batch:
            partition = self.source.partition(message)
            if partition is None:
                continue
            fence = self.leases[partition].last_fence
            # A message of a channel given up since (the partition abandoned, or taken again with a new
            # epoch) was evaluated on states that are not the committed ones: it must not commit.
            if fence is None or partition in self._abandoned or not self.source.current(message):
                fences[partition] = Fence(lease_name(partition), self.replica_id, -1)
            else:
                fences.setdefault(partition, fence)
        return tuple(fences.values())

    def abandon(self, batch: Iterable[RawMessage]) -> None:
        """A commit of `batch` was refused: every partition in it is given up at once (what this replica
        evaluated of them since is not committed), and taken again, from what is committed, if it is still
        this replica's."""
        for partition in {self.source.partition(message) for message in batch}:
            if partition is not None and partition in self.held and partition not in self._abandoned:
                self._abandoned.add(partition)
                task = asyncio.ensure_future(self.give_up(partition))
                self._giving_up.add(task)
                task.add_done_callback(self._giving_up.discard)

    async def leave(self) -> None:
        """A clean stop: every partition let go and this replica's heartbeat removed, so the others take
        its share at their next round instead of waiting for its leases to expire."""
        for partition in sorted(self.held):
            await self.give_up(partition)
        try:
            async with asyncio.timeout(2.0), self.pool.connection(timeout=2.0) as conn:
                await forget_replica(conn, self.replica_id)
        except (psycopg.OperationalError, PoolTimeout, TimeoutError):
            pass
