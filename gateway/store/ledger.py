"""The collection ledger's rows and the trucks' readings it is built from (see gateway/ledger/)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gateway.store.queries import query

Row = dict[str, Any]


async def readings_received(conn: AsyncConnection, jurisdiction: str, since: datetime, late: timedelta,
                             limit: int, after: Row | None = None) -> list[Row]:
    """Received at or after `since`, in receiving order; `after`: the last row of the previous page."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("ledger_readings_received"), {
            "since": after["received_at"] if after else since, "oldest": since - late, "jurisdiction": jurisdiction,
            "limit": limit, "after": after["device_id"] if after else None,
            "after_time": after["time"] if after else None, "after_key": after["message_key"] if after else None})
        return await cur.fetchall()


async def readings_between(conn: AsyncConnection, jurisdiction: str, start: datetime, end: datetime,
                           box: tuple[float, float, float, float] | None = None, tag: str | None = None) -> list[Row]:
    """Device time in [start, end); with `box` (south, west, north, east), only fixes inside it or lifts of `tag`."""
    south, west, north, east = box if box else (None, None, None, None)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("ledger_readings_between"), {
            "start": start, "end": end, "jurisdiction": jurisdiction, "south": south, "west": west, "north": north,
            "east": east, "tag": tag})
        return await cur.fetchall()


async def ledger_rows(conn: AsyncConnection, jurisdiction: str, first: date, last: date,
                      stop_ids: Sequence[str] | None = None) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("ledger_rows"), {"jurisdiction": jurisdiction, "first": first, "last": last,
                                                 "stop_ids": list(stop_ids) if stop_ids is not None else None})
        return await cur.fetchall()


async def upsert_rows(conn: AsyncConnection, jurisdiction: str, rows: Sequence[Row]) -> None:
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(query("ledger_upsert"), [{**row, "jurisdiction": jurisdiction} for row in rows])


async def delete_days(conn: AsyncConnection, jurisdiction: str, first: date, last: date) -> None:
    await conn.execute(query("ledger_delete_days"), {"jurisdiction": jurisdiction, "first": first, "last": last})


async def lock_progress(conn: AsyncConnection, jurisdiction: str, late: timedelta) -> tuple[datetime, datetime | None]:
    """(read until, rewind to), locked until the caller's transaction ends; created on a first round."""
    await conn.execute(query("ledger_lock_progress"), {"jurisdiction": jurisdiction, "late": late})
    async with conn.cursor() as cur:
        await cur.execute(query("ledger_progress_for_update"), {"jurisdiction": jurisdiction})
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]


async def set_progress(conn: AsyncConnection, jurisdiction: str, read_until: datetime, clear_rewind: bool) -> None:
    await conn.execute(query("ledger_set_progress"), {"jurisdiction": jurisdiction, "read_until": read_until,
                                                      "clear_rewind": clear_rewind})


async def add_worked_days(conn: AsyncConnection, jurisdiction: str, days: Sequence[date]) -> None:
    if days:
        await conn.execute(query("ledger_add_days"), {"jurisdiction": jurisdiction, "days": sorted(set(days))})


async def delete_worked_days(conn: AsyncConnection, jurisdiction: str, first: date, last: date) -> None:
    await conn.execute(query("ledger_delete_worked_days"), {"jurisdiction": jurisdiction, "first": first, "last": last})


async def worked_days(conn: AsyncConnection, jurisdiction: str, first: date, last: date) -> set[date]:
    async with conn.cursor() as cur:
        await cur.execute(query("ledger_worked_days"), {"jurisdiction": jurisdiction, "first": first, "last": last})
        return {row[0] for row in await cur.fetchall()}


async def any_truck_reading(conn: AsyncConnection, jurisdiction: str, start: datetime, end: datetime) -> bool:
    async with conn.cursor() as cur:
        await cur.execute(query("ledger_any_truck_reading"), {"jurisdiction": jurisdiction, "start": start,
                                                              "end": end})
        row = await cur.fetchone()
        return bool(row and row[0])
