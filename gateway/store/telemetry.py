"""Telemetry rows: COPY (binary) into the per-connection staging table, then an idempotent INSERT; and
stretches of history read back in device-time order for the rule lab."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.abc import Buffer
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, JsonbBinaryLoader

from gateway.events import EMPTY, Reading
from gateway.store.queries import query

# A batch whose oldest row was received longer ago than this before its commit rewinds the collection
# ledger's live rounds (they read again `OVERLAP`, five minutes, back: see gateway/ledger/keeping.py).
COMMITTED_LATE = timedelta(minutes=4)

_COPY_TYPES = [
    "timestamptz", "text", "bytea", "timestamptz", "text",
    "float8", "float8", "float8", "float8", "float8", "float8", "float8", "float8", "float8",
    "bool", "float8", "text", "text", "jsonb",
]


def dump_json(value: Any) -> bytes | str:
    """orjson where it can (five times faster), the standard library for what it refuses (integers
    beyond 64 bits, keys that are not strings)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, default=str)


async def insert_readings(conn: AsyncConnection, readings: Sequence[Reading],
                          new_keys: set[bytes] | None = None) -> int:
    """Inserts the readings not stored yet, inside the caller's transaction; returns how many were new
    (and, given `new_keys`, adds their message keys to it)."""
    if not readings:
        return 0
    async with conn.cursor() as cur:
        async with cur.copy(query("copy_telemetry_staging")) as copy:
            copy.set_types(_COPY_TYPES)
            for r in readings:
                await copy.write_row((
                    r.time, r.device_id, r.message_key, r.received_at, r.profile,
                    r.lat, r.lon, r.speed_kmh, r.heading_deg, r.fill_pct, r.distance_mm, r.temperature_c,
                    r.battery_pct, r.battery_v, r.tilted, r.weight_kg, r.rfid, r.event,
                    Jsonb(dict(r.extra), dumps=dump_json) if r.extra else None,
                ))
        oldest = min(r.received_at for r in readings)
        if oldest < datetime.now(UTC) - COMMITTED_LATE:
            # Rare: rows committed long after they were received (a dead-letter replay, a batch retried
            # while the database was away). The collection ledger reads what was received since its last
            # round: it must read back to these.
            await cur.execute(query("ledger_rewind"), {"oldest": oldest})
        if new_keys is None:
            await cur.execute(query("insert_telemetry_from_staging"))
            return cur.rowcount
        await cur.execute(query("insert_telemetry_from_staging_returning"))
        rows = await cur.fetchall()
        new_keys.update(bytes(row[0]) for row in rows)
        return len(rows)


def reading_from_row(row: dict[str, Any]) -> Reading:
    values = dict(row)
    values["message_key"] = bytes(values["message_key"])
    values["extra"] = MappingProxyType(values["extra"] or {})
    return Reading(**values)


def latest_readings(conn: psycopg.Connection[Any], device_ids: Sequence[str] | None = None) -> dict[str, Reading]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query("latest_readings"), {"device_ids": list(device_ids) if device_ids else None})
        return {row["device_id"]: reading_from_row(row) for row in cur.fetchall()}


class _ExtraLoader(JsonbBinaryLoader):
    """`extra` as a read-only mapping, decoded by orjson, and once per distinct small value: a fleet's
    readings repeat a few (`{"ignition": true}`), and decoding each with the standard library was half the
    cost of reading history back."""

    _cache: ClassVar[dict[bytes, Mapping[str, Any]]] = {}

    def load(self, data: Buffer) -> Any:
        raw = bytes(data)
        found = self._cache.get(raw)
        if found is not None:
            return found
        if raw[:1] != b"\x01":
            raise psycopg.DataError(f"unknown jsonb binary format: {raw[:1]!r}")
        value = orjson.loads(raw[1:])
        loaded: Any = MappingProxyType(value) if isinstance(value, dict) else value
        if len(raw) <= 128 and len(self._cache) < 4096:
            self._cache[raw] = loaded
        return loaded


def stored_readings(conn: psycopg.Connection[Any], since: datetime, until: datetime,
                    device_ids: Sequence[str] | None = None, fetch_size: int = 5000, *,
                    events: Sequence[str] | None = None, share: tuple[int, int] | None = None) -> Iterator[Reading]:
    """The readings of [since, until) in device-time order, through a server-side cursor: memory holds one
    fetch, whatever the range. Inside the caller's transaction (a server-side cursor needs one).
    Optionally only readings with one of `events`, or only share (k, n): the devices whose hash is k
    modulo n."""
    with conn.cursor(name="wastegate_stored_readings", binary=True) as cur:
        cur.adapters.register_loader("jsonb", _ExtraLoader)
        cur.itersize = fetch_size
        cur.execute(query("stored_readings"), {
            "since": since, "until": until, "device_ids": list(device_ids) if device_ids is not None else None,
            "events": list(events) if events is not None else None,
            "share": share[0] if share else None, "shares": share[1] if share else None})
        empty = EMPTY
        while rows := cur.fetchmany(fetch_size):
            for (device_id, time, received_at, key, profile, lat, lon, speed, heading, fill, distance, temperature,
                 battery_pct, battery_v, tilted, weight, rfid, event, extra) in rows:
                yield Reading(device_id, time, received_at, key, profile, lat, lon, speed, heading, fill, distance,
                              temperature, battery_pct, battery_v, tilted, weight, rfid, event, extra or empty)
