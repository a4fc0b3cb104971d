"""Keeping the ledger in the database: live, from what was received since the last round (the holder of the
sweep lease runs it beside the sweeps, never on the ingest path), and rebuilt from history for some days.
Both fold the same readings into the same facts (`book.fold`), so the same history gives the same ledger
whichever way it came (tests/integration/test_ledger.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from psycopg import AsyncConnection

from gateway.events import Fence
from gateway.ledger.book import Book, Facts, Seen, Status, Stop, TruckReading, merge_into
from gateway.store import ledger as store
from gateway.store.leases import check_fences

PAGE = 20_000
# A batch received before the last round's newest row may commit after it (another replica, a slow
# commit): each round reads again this far back. Facts merge "earliest wins", so a row read twice is a no-op.
OVERLAP = timedelta(minutes=5)
LATE = timedelta(days=2)  # the oldest device time a live round looks at (a truck's buffered upload)


@dataclass(frozen=True)
class Entry:
    stop: Stop
    facts: Facts
    status: Status


def reading_of(row: dict[str, Any]) -> TruckReading:
    return TruckReading(row["device_id"], row["time"], row["lat"], row["lon"], row["rfid"], row["event"],
                        row["weight_kg"])


def facts_of(row: dict[str, Any]) -> Facts:
    def seen(prefix: str, at: str, with_place: bool = False) -> Seen | None:
        if row[at] is None:
            return None
        if with_place:
            return Seen(row[at], row[f"{prefix}_truck"], row[f"{prefix}_lat"], row[f"{prefix}_lon"],
                        row[f"{prefix}_weight_kg"])
        return Seen(row[at], row[f"{prefix}_truck"])

    return Facts(row["stop_id"], row["day"], row["scheduled"], seen("lift", "lift_at", True),
                 seen("passed", "passed_at"), seen("not_out", "not_out_at"))


def row_of(facts: Facts) -> dict[str, Any]:
    lift, passed, not_out = facts.lift, facts.passed, facts.not_out
    return {"stop_id": facts.stop_id, "day": facts.day, "scheduled": facts.scheduled,
            "lift_at": lift.at if lift else None, "lift_truck": lift.truck if lift else None,
            "lift_lat": lift.lat if lift else None, "lift_lon": lift.lon if lift else None,
            "lift_weight_kg": lift.weight_kg if lift else None,
            "passed_at": passed.at if passed else None, "passed_truck": passed.truck if passed else None,
            "not_out_at": not_out.at if not_out else None, "not_out_truck": not_out.truck if not_out else None}


def _worked(book: Book, rows: list[dict[str, Any]]) -> set[date]:
    """The local days the readings are of: days the trucks were at work."""
    tz = book.stops[0].tz if book.stops else UTC
    return {row["time"].astimezone(tz).date() for row in rows}


async def _merge_and_store(conn: AsyncConnection, book: Book, folded: dict[tuple[str, date], Facts]) -> int:
    if not folded:
        return 0
    days = sorted({day for _, day in folded})
    known = {(f.stop_id, f.day): f for f in map(facts_of, await store.ledger_rows(
        conn, book.jurisdiction, days[0], days[-1], sorted({stop for stop, _ in folded})))}
    changed = merge_into(known, folded)
    await store.upsert_rows(conn, book.jurisdiction, [row_of(known[key]) for key in sorted(changed)])
    return len(changed)


async def update_live(conn: AsyncConnection, book: Book, fences: Sequence[Fence] = (), late: timedelta = LATE) -> int:
    """One live round: what was received since the last one (and `OVERLAP` before, or back to rows
    committed late), folded and merged, a page per transaction under `fences` (the sweep lease) with the
    progress locked. A first round starts `late` before now (history before it: `rebuild`). Returns how
    many (stop, day) facts changed."""
    changed = 0
    after: dict[str, Any] | None = None
    since: datetime | None = None
    while True:
        async with conn.transaction():
            await check_fences(conn, fences)
            read_until, rewind_to = await store.lock_progress(conn, book.jurisdiction, late)
            first_page = since is None
            if since is None:
                since = read_until - OVERLAP if rewind_to is None else min(read_until - OVERLAP, rewind_to)
            rows = await store.readings_received(conn, book.jurisdiction, since, late, PAGE, after)
            # The fold is CPU work: off the event loop that also carries the leases and the MQTT session.
            folded = await asyncio.to_thread(book.fold, [reading_of(row) for row in rows])
            changed += await _merge_and_store(conn, book, folded)
            await store.add_worked_days(conn, book.jurisdiction, sorted(_worked(book, rows)))
            newest = max((row["received_at"] for row in rows), default=read_until)
            await store.set_progress(conn, book.jurisdiction, max(newest, read_until),
                                     clear_rewind=first_page and rewind_to is not None)
        if len(rows) < PAGE:
            return changed
        after = rows[-1]


def _day_bounds(book: Book, first: date, last: date) -> tuple[datetime, datetime]:
    zones: set[tzinfo] = {stop.tz for stop in book.stops} or {UTC}
    start = min(datetime.combine(first, time(0), tz) for tz in zones)
    end = max(datetime.combine(last + timedelta(days=1), time(0), tz) for tz in zones)
    return start, end


async def rebuild(conn: AsyncConnection, book: Book, first: date, last: date) -> int:
    """The days [first, last] again from the telemetry alone: what a live ledger should hold for them."""
    start, end = _day_bounds(book, first, last)
    async with conn.transaction():
        await store.lock_progress(conn, book.jurisdiction, LATE)  # not while a live round writes
        await store.delete_days(conn, book.jurisdiction, first, last)
        await store.delete_worked_days(conn, book.jurisdiction, first, last)
        rows = await store.readings_between(conn, book.jurisdiction, start, end)
        await store.add_worked_days(conn, book.jurisdiction,
                                    sorted(d for d in _worked(book, rows) if first <= d <= last))
        folded = await asyncio.to_thread(book.fold, [reading_of(row) for row in rows], (first, last))
        await store.upsert_rows(conn, book.jurisdiction, [row_of(folded[key]) for key in sorted(folded)])
    return len(folded)


async def entries(conn: AsyncConnection, book: Book, first: date, last: date, now: datetime) -> list[Entry]:
    """Every stop due on each day of [first, last], and every lift off schedule, with its status at `now`.
    A past day the trucks sent nothing of (before the ledger was kept, an outage) is not listed: no data is
    not a day of misses."""
    rows = await store.ledger_rows(conn, book.jurisdiction, first, last)
    stored = {(f.stop_id, f.day): f for f in map(facts_of, rows)}
    worked = await store.worked_days(conn, book.jurisdiction, first, last)
    today = now.astimezone(book.stops[0].tz).date() if book.stops else now.date()
    found = []
    day = first
    while day <= last:
        if day not in worked and day < today:
            day += timedelta(days=1)
            continue
        for stop in book.due_on(day):
            facts = stored.pop((stop.id, day), None) or Facts(stop.id, day, True)
            found.append(Entry(stop, facts, facts.status_at(stop, now)))
        day += timedelta(days=1)
    for (stop_id, _), facts in sorted(stored.items(), key=lambda item: (item[0][1], item[0][0])):
        extra = book.by_id.get(stop_id)
        if extra is not None and facts.lift is not None:
            found.append(Entry(extra, facts, facts.status_at(extra, now)))
    return sorted(found, key=lambda e: (e.facts.day, e.stop.round, e.stop.id))


async def entry_now(conn: AsyncConnection, book: Book, stop: Stop, day: date, now: datetime) -> Entry:
    """One stop's day as the committed telemetry tells it this instant (a citizen is waiting): its lifts and
    the fixes near it, folded, merged with what the ledger holds."""
    start, end = _day_bounds(book, day, day)
    # Twice the reach, in degrees; a degree of longitude is at least half a degree of latitude's length below
    # 60° of latitude, hence the longitude's doubled.
    reach = book.pass_m * 2 / 111_320.0
    box = ((stop.lat or 0) - reach, (stop.lon or 0) - reach * 2, (stop.lat or 0) + reach, (stop.lon or 0) + reach * 2) \
        if stop.lat is not None and stop.lon is not None else None
    rows = await store.readings_between(conn, book.jurisdiction, start, end, box, stop.tag)
    # Folded with every stop: a neighbour's "bin not out" is the neighbour's, not the nearest one's.
    folded = book.fold(map(reading_of, rows), (day, day))
    facts = Facts(stop.id, day, stop.scheduled_on(day))
    for stored in map(facts_of, await store.ledger_rows(conn, book.jurisdiction, day, day, [stop.id])):
        facts.merge(stored)
    if (found := folded.get((stop.id, day))) is not None:
        facts.merge(found)
    return Entry(stop, facts, facts.status_at(stop, now))


async def trucks_worked(conn: AsyncConnection, book: Book, day: date) -> bool:
    """Whether the ledger, or the telemetry, has any truck reading of the day."""
    if day in await store.worked_days(conn, book.jurisdiction, day, day):
        return True
    start, end = _day_bounds(book, day, day)
    return await store.any_truck_reading(conn, book.jurisdiction, start, end)
