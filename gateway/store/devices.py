"""The `devices` table: the registry the gateway reads at start and refreshes, and `last_seen` upkeep."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from gateway.devices import Device
from gateway.events import DeviceSeen
from gateway.store.queries import query


def _device(row: tuple[Any, ...]) -> Device:
    device_id, profile, kind, name, lat, lon, attributes, last_f_cnt, last_seen, jurisdiction = row
    return Device(device_id, profile, kind, name, lat, lon, MappingProxyType(attributes or {}), last_f_cnt, last_seen,
                  jurisdiction)


async def load_devices(conn: AsyncConnection) -> list[Device]:
    async with conn.cursor() as cur:
        await cur.execute(query("all_devices"))
        return [_device(row) for row in await cur.fetchall()]


def devices_by_id(conn: psycopg.Connection[Any], device_ids: Sequence[str] | None = None) -> list[Device]:
    rows = conn.execute(query("devices_by_id"), {"device_ids": list(device_ids) if device_ids else None})
    return [_device(row) for row in rows.fetchall()]


_SEEN_TYPES = ["text", "text", "text", "timestamptz", "int8", "int8", "timestamptz"]


async def touch_devices(conn: AsyncConnection, seen: Iterable[DeviceSeen]) -> None:
    """Registers devices first heard of, moves last_seen forward, adds up lost LoRaWAN frames.

    The rows go in by binary COPY: as query parameters, a batch's few hundred devices cost more to
    encode (six arrays, element by element) than the whole telemetry COPY."""
    rows = list(seen)
    if not rows:
        return
    async with conn.cursor() as cur:
        async with cur.copy(query("copy_devices_seen_staging")) as copy:
            copy.set_types(_SEEN_TYPES)
            for s in rows:
                await copy.write_row((s.device_id, s.profile, s.kind, s.last_received_at, s.frames_lost, s.last_f_cnt,
                                      s.last_reading_at))
        await cur.execute(query("touch_devices"))


def upsert_devices(conninfo: str, devices: Sequence[Device]) -> int:
    """All or nothing: one transaction for the whole list."""
    with psycopg.connect(conninfo) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            query("upsert_device"),
            [
                {"device_id": d.device_id, "profile": d.profile, "kind": d.kind, "name": d.name,
                 "lat": d.lat, "lon": d.lon, "attributes": Jsonb(dict(d.attributes)), "jurisdiction": d.jurisdiction}
                for d in devices
            ],
        )
    return len(devices)
