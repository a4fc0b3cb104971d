"""What the periodic sweeps decide on, read from what is committed (by any replica): each device's latest
reading, a device's first reading after a silence began, and a tag's bin lifts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from psycopg import AsyncConnection

from gateway.store.queries import query

Lift = tuple[datetime, str]  # when, by which truck


async def last_readings(conn: AsyncConnection) -> dict[str, datetime]:
    async with conn.cursor() as cur:
        await cur.execute(query("sweep_last_readings"))
        return {device_id: at for device_id, at in await cur.fetchall()}


async def first_readings_after(conn: AsyncConnection, since: Mapping[str, datetime]) -> dict[str, datetime]:
    """For each device, the device time of its first reading after `since[device]`, when there is one."""
    if not since:
        return {}
    devices = sorted(since)
    async with conn.cursor() as cur:
        await cur.execute(query("sweep_first_readings_after"), (devices, [since[d] for d in devices]))
        return {device_id: at for device_id, at in await cur.fetchall() if at is not None}


async def lifts_since(conn: AsyncConnection, since: Mapping[str, datetime]) -> dict[str, list[Lift]]:
    """For each tag, its bin lifts since `since[tag]`, in time order."""
    if not since:
        return {}
    tags = sorted(since)
    found: dict[str, list[Lift]] = {}
    async with conn.cursor() as cur:
        await cur.execute(query("sweep_lifts_since"), (tags, [since[t] for t in tags]))
        for tag, at, device_id in await cur.fetchall():
            found.setdefault(tag, []).append((at, device_id))
    return found
