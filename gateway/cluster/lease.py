"""One lease, held for as long as this replica can: taken when free, renewed every third of its time to
live, let go at a clean stop. A commit made under it is fenced with its epoch (`last_fence`), so what
this replica decides after losing it is refused by the database, not merely unlikely."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway import metrics
from gateway.events import Fence
from gateway.store.leases import LeaseHolder, acquire_lease, lease_holder, release_lease, take_dead_lease

log = logging.getLogger(__name__)


_PROCESS = uuid.uuid4().hex[:8]  # tells this process from an earlier one with the same pid (a container restarted)
_serial = itertools.count(1)


def new_replica_id() -> str:
    """`host/pid/process/n`: unique per gateway, and telling a replica whether a holder was a process of its own
    host that has ended (then its lease is taken over at once instead of waiting for it to expire)."""
    return f"{socket.gethostname()}/{os.getpid()}/{_PROCESS}/{next(_serial)}"


def holder_is_dead(holder: str | None, me: str) -> bool:
    """Whether `holder` is known to be gone: a process of this host that no longer runs, or an earlier
    process that had this very pid (a container restarted). Anything else (another host, a name given in
    the settings) is alive until its lease expires."""
    if not holder or holder == me:
        return False
    theirs, mine = holder.split("/"), me.split("/")
    if len(theirs) != 4 or len(mine) != 4 or theirs[0] != mine[0] or not theirs[1].isdigit():
        return False
    if theirs[1] == mine[1]:
        return theirs[2] != mine[2]
    try:
        os.kill(int(theirs[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseKeeper:
    def __init__(self, pool: AsyncConnectionPool, name: str, holder: str, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.name = name
        self.holder = holder
        self.ttl_s = ttl_s
        self.clock = clock
        # The fence of the last time it was held: commits carry it even after the lease is lost, so the
        # database refuses them (never a commit without a fence).
        self.last_fence: Fence | None = None
        self.lost = asyncio.Event()  # set when a lease this replica held is found held by another
        self._renewed_at = float("-inf")
        self.other: LeaseHolder | None = None  # who holds it, when another replica does

    def held(self) -> Fence | None:
        """The fence while this replica holds the lease: renewed less than its time to live ago, so no other
        replica can have taken it since (a replica cut off from the database stops acting first)."""
        if self.last_fence is not None and self.clock() - self._renewed_at < self.ttl_s and not self.lost.is_set():
            return self.last_fence
        return None

    async def try_once(self) -> Fence | None:
        started = self.clock()
        try:
            async with self.pool.connection() as conn:
                epoch = await acquire_lease(conn, self.name, self.holder, self.ttl_s)
                if epoch is None:
                    self.other = await lease_holder(conn, self.name)
                    if self.other and holder_is_dead(self.other.holder, self.holder):
                        epoch = await take_dead_lease(conn, self.name, self.holder, str(self.other.holder), self.ttl_s)
                        if epoch is not None:
                            log.warning("lease %s taken over from %s, a process of this host that has ended",
                                        self.name, self.other.holder)
        except (psycopg.Error, PoolTimeout) as exc:  # unreachable, or read-only during a failover
            log.warning("lease %s not renewed", self.name, extra={"error": str(exc)})
            return self.held()
        if epoch is None:
            if self.last_fence is not None and not self.lost.is_set():
                log.error("lease %s lost to %s", self.name, self.other.holder if self.other else "another replica")
                self.lost.set()
            metrics.LEASES_HELD.labels(self.name).set(0)
            return None
        if self.last_fence is None or self.last_fence.epoch != epoch or self.lost.is_set():
            log.warning("lease %s held by this replica (%s), epoch %d", self.name, self.holder, epoch)
            self.lost.clear()
        self.other = None
        metrics.LEASES_HELD.labels(self.name).set(1)
        self.last_fence = Fence(self.name, self.holder, epoch)
        self._renewed_at = started
        return self.last_fence

    async def wait_held(self, stop: asyncio.Event, give_up_after_s: float | None = None) -> Fence | None:
        """Tries until it holds the lease (None when stopped first, or after `give_up_after_s`)."""
        deadline = None if give_up_after_s is None else self.clock() + give_up_after_s
        while not stop.is_set():
            fence = await self.try_once()
            if fence is not None:
                return fence
            if deadline is not None and self.clock() >= deadline:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.ttl_s / 3)
        return None

    async def run(self) -> None:
        """Keeps trying (or renewing) every third of the time to live, until cancelled: after the pipeline
        has committed its last batch under the lease, then `release`."""
        while True:
            try:
                await self.try_once()
            except Exception:  # renewals must not stop with one unexpected failure
                log.exception("lease %s: renewal failed", self.name)
            await asyncio.sleep(self.ttl_s / 3)

    async def release(self) -> None:
        if self.last_fence is None:
            return
        try:
            # Bounded: with the database gone, a stop must not wait for it (the lease expires on its own).
            async with asyncio.timeout(2.0), self.pool.connection(timeout=2.0) as conn:
                await release_lease(conn, self.name, self.holder)
        except (psycopg.Error, PoolTimeout, TimeoutError):
            pass
        self._renewed_at = float("-inf")
        metrics.LEASES_HELD.labels(self.name).set(0)
