"""The `devices` table: the registry the gateway reads at start and refreshes, and `last_seen` upkeep."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from types import MappingProxyType

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from gateway.devices import Device
from gateway.store.queries import query


async def load_devices(conn: AsyncConnection) -> list[Device]:
    async with conn.cursor() as cur:
        await cur.execute(query("all_devices"))
        return [
            Device(device_id, profile, kind, name, lat, lon, MappingProxyType(attributes or {}))
            for device_id, profile, kind, name, lat, lon, attributes in await cur.fetchall()
        ]


async def touch_devices(conn: AsyncConnection, seen: Iterable[tuple[str, str, str, datetime]]) -> None:
    """(device_id, profile, kind, received_at) per device of a batch: registers new ones, moves last_seen."""
    rows = sorted(seen)
    if not rows:
        return
    device_ids, profiles, kinds, times = (list(column) for column in zip(*rows, strict=True))
    await conn.execute(
        query("touch_devices"), {"device_ids": device_ids, "profiles": profiles, "kinds": kinds, "seen": times}
    )


def upsert_devices(conninfo: str, devices: Sequence[Device]) -> int:
    """All or nothing: one transaction for the whole list."""
    with psycopg.connect(conninfo) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            query("upsert_device"),
            [
                {"device_id": d.device_id, "profile": d.profile, "kind": d.kind, "name": d.name,
                 "lat": d.lat, "lon": d.lon, "attributes": Jsonb(dict(d.attributes))}
                for d in devices
            ],
        )
    return len(devices)
