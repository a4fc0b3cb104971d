"""A citizen's missed-collection report answered at once by the ledger's evidence.

The report is matched to a stop on that day's schedule (by its address, else by position within
`MATCH_M`), the stop's day is read from the committed telemetry this instant (`keeping.entry_now`), and
the answer, a public note from `answers/<status>.txt`, says what the trucks saw: collected (the report is
closed as not needed; the reporter may reopen it), not out when the truck passed (closed likewise), not yet
(the round is in progress; it stays open), or missed (it stays open as a real incident for collection
operations, linked to the rule's missed-collection incident when there is one). A day no truck sent
anything of, or a position with several doors within reach, gets no answer: staff work it as any other.
The templates are given times, the round's name and a weight only: nothing about the household, the
truck or its crew.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from psycopg import AsyncConnection

from gateway.ledger.book import Book, Status, Stop
from gateway.ledger.keeping import Entry, entry_now, trucks_worked
from gateway.store import workflow

SERVICE_CODE = "missed_collection"
MATCH_M = 50.0  # a phone's position of the reporter's doorstep
CLOSES: frozenset[Status] = frozenset({"lifted", "not_presented"})
ACTOR = "system:ledger"
_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "answers"), undefined=StrictUndefined,
                         autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class Answer:
    status: Status
    note: str
    stop_id: str
    day: date


def _normal(address: str) -> str:
    return re.sub(r"[\s,.]+", " ", address).strip().casefold()


def match_stop(book: Book, day: date, address: str | None, lat: float | None, lon: float | None) -> Stop | None:
    """The stop on `day`'s schedule the report is about: the same address, else the only one within MATCH_M."""
    due = book.due_on(day)
    if address:
        wanted = _normal(address)
        for stop in due:
            if stop.address and _normal(stop.address) == wanted:
                return stop
    if lat is None or lon is None:
        return None
    near = [stop for stop in due if stop.lat is not None and stop.lon is not None
            and 111_320.0 * math.hypot(stop.lat - lat, (stop.lon - lon) * math.cos(math.radians(lat))) <= MATCH_M]
    # Several doors within reach (a block of flats): which one is not known, so no one's evidence is given.
    return near[0] if len(near) == 1 else None


def note_for(entry: Entry) -> str:
    facts, stop = entry.facts, entry.stop
    seen = facts.lift if entry.status == "lifted" else facts.not_out or facts.passed
    values = {
        "time": seen.at.astimezone(stop.tz).strftime("%H:%M") if seen else "",
        "round": stop.round or stop.district or "collection",
        "kg": f"{facts.lift.weight_kg:g}" if facts.lift and facts.lift.weight_kg is not None else "",
        "until": stop.window_on(facts.day)[1].strftime("%H:%M"),
    }
    return _TEMPLATES.get_template(f"{entry.status}.txt").render(**values).strip()


async def answer_report(conn: AsyncConnection, book: Book, incident_id: int, address: str | None, lat: float | None,
                        lon: float | None, now: datetime, link_within_m: float) -> Answer | None:
    """Answers the report `incident_id` (just stored, in this transaction) when it matches a stop due
    today; None when it does not (it is worked as any other report)."""
    if not book.stops:
        return None
    day = now.astimezone(book.stops[0].tz).date()
    stop = match_stop(book, day, address, lat, lon)
    if stop is None:
        return None
    entry = await entry_now(conn, book, stop, day, now)
    if entry.status == "extra":
        return None
    if entry.status == "missed" and not await trucks_worked(conn, book, day):
        # Nothing of any truck that day (an outage, uploads still buffered): no evidence either way.
        await workflow.comment(conn, incident_id, ACTOR, f"ledger: stop {stop.id}, no truck data for {day}",
                               public=False, data={"stop": stop.id, "day": day.isoformat(), "status": "no_data"})
        return None
    note = note_for(entry)
    if entry.status in CLOSES:
        await workflow.transition(conn, incident_id, "close", ACTOR, note=note)
    else:
        await workflow.comment(conn, incident_id, ACTOR, note, public=True)
        await workflow.comment(conn, incident_id, ACTOR, f"ledger: stop {stop.id}, {entry.status}", public=False,
                               data={"stop": stop.id, "day": day.isoformat(), "status": entry.status})
        if entry.status == "missed" and stop.lat is not None and stop.lon is not None:
            await workflow.link_to_matching(conn, incident_id, SERVICE_CODE, stop.lat, stop.lon, book.jurisdiction,
                                            link_within_m, now)
    return Answer(entry.status, note, stop.id, day)
