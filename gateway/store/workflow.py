"""The case store as people use it: citizens' reports (linked to a matching device incident), and staff
moving incidents through their workflow. Every change is appended to `incident_events` with its actor.

Workflow: open → acknowledged → assigned → in_progress → resolved → closed, with reopen from resolved or
closed; `TRANSITIONS` lists what each action allows. Resolving or closing an incident does the same to the
citizen reports linked to it, so both sides hear of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from gateway.store.organisations import Assigner, Assignment, record_assignment
from gateway.store.queries import query

OPEN_STATUSES = ("open", "acknowledged", "assigned", "in_progress")
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "acknowledge": (frozenset({"open"}), "acknowledged"),
    "assign": (frozenset(OPEN_STATUSES), "assigned"),
    "start": (frozenset({"open", "acknowledged", "assigned"}), "in_progress"),
    "resolve": (frozenset(OPEN_STATUSES), "resolved"),
    "close": (frozenset({*OPEN_STATUSES, "resolved"}), "closed"),
    "reopen": (frozenset({"resolved", "closed"}), "open"),
}


class IncidentNotFound(LookupError):
    pass


class TransitionRefused(ValueError):
    """Not allowed from the incident's current status (HTTP 409)."""


@dataclass(frozen=True)
class NewReport:
    source: str  # citizen | staff | partner
    service_code: str
    title: str
    description: str
    lat: float | None
    lon: float | None
    address: str | None
    media_url: str | None
    attributes: dict[str, Any]
    reporter: dict[str, Any] | None  # personal data: stored, never shown publicly
    jurisdiction: str = ""  # the municipality it is reported to ('' on a single-city install)
    # how it reached the city: web, app, phone, counter, letter, email, partner
    channel: str = "web"


async def create_report(conn: AsyncConnection, report: NewReport, now: datetime, link_within_m: float,
                        link_window: timedelta, assign: Assigner | None = None) -> tuple[int, int | None]:
    """Stores a report, routed by `assign`; returns its id and the device incident it was linked to, if any."""
    linked_to = None
    if report.lat is not None and report.lon is not None:
        async with conn.cursor() as cur:
            await cur.execute(query("matching_device_incident"), {
                "lat": report.lat, "lon": report.lon, "service_code": report.service_code,
                "since": now - link_window, "distance_m": link_within_m, "jurisdiction": report.jurisdiction})
            row = await cur.fetchone()
            linked_to = row[0] if row else None
    async with conn.cursor() as cur:
        await cur.execute(query("insert_report"), {
            "source": report.source, "service_code": report.service_code, "title": report.title,
            "description": report.description, "lat": report.lat, "lon": report.lon, "address": report.address,
            "now": now, "reporter": Jsonb(report.reporter) if report.reporter else None,
            "media_url": report.media_url, "attributes": Jsonb(report.attributes), "linked_to": linked_to,
            "jurisdiction": report.jurisdiction, "channel": report.channel,
        })
        row = await cur.fetchone()
        assert row is not None
        incident_id = int(row[0])
    await add_event(conn, incident_id, "created", report.source, to_status="open")
    if assign is not None:
        assignment = assign(report.service_code, report.lat, report.lon, now, None, report.jurisdiction)
        await record_routing(conn, incident_id, assignment, "system")
    if linked_to is not None:
        await add_event(conn, incident_id, "link", "system", note=f"linked to incident {linked_to}",
                        data={"linked_to": linked_to})
        await add_event(conn, linked_to, "link", "system", note=f"citizen report {incident_id} linked",
                        data={"report": incident_id})
    return incident_id, linked_to


async def transition(conn: AsyncConnection, incident_id: int, action: str, actor: str, note: str = "",
                     assignee: str | None = None, public: bool = True) -> str:
    """Applies a workflow action; returns the new status."""
    if action not in TRANSITIONS:
        raise TransitionRefused(f"unknown action {action!r}; one of {', '.join(TRANSITIONS)}")
    allowed_from, target = TRANSITIONS[action]
    current = await _lock(conn, incident_id)
    if current["status"] not in allowed_from:
        raise TransitionRefused(f"cannot {action} an incident that is {current['status']}")
    if action == "assign" and not assignee:
        raise TransitionRefused("assign needs an assignee (department, partner entity or person)")
    try:
        async with conn.transaction():  # a savepoint: a refused reopen leaves the outer transaction usable
            await conn.execute(query("set_incident_status"),
                               {"id": incident_id, "status": target, "assignee": assignee})
    except psycopg.errors.UniqueViolation:
        raise TransitionRefused("the same cause already has an open incident; reopen that one") from None
    await add_event(conn, incident_id, "status", actor, from_status=current["status"], to_status=target,
                    note=note, public=public)
    if assignee:
        await add_event(conn, incident_id, "assignment", actor, note=assignee, data={"assignee": assignee},
                        public=False)
    if target in ("resolved", "closed"):
        await _follow_linked(conn, incident_id, target, actor)
        if current["linked_to"] is not None:  # the device incident hears of its citizen report's outcome
            await add_event(conn, current["linked_to"], "link", actor,
                            note=f"linked citizen report {incident_id} {target}", data={"report": incident_id})
    return target


async def incident_owner(conn: AsyncConnection, incident_id: int) -> tuple[int | None, str]:
    """The organisation an incident is routed to and its municipality; IncidentNotFound when there is no
    such incident."""
    async with conn.cursor() as cur:
        await cur.execute(query("incident_organisation"), {"id": incident_id})
        row = await cur.fetchone()
    if row is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    return (int(row[0]) if row[0] is not None else None), str(row[1])


async def record_routing(conn: AsyncConnection, incident_id: int, assignment: Assignment, actor: str) -> None:
    """A new incident's organisation, priority and deadlines, and the history's line saying so."""
    await record_assignment(conn, incident_id, assignment)
    await add_event(conn, incident_id, "assignment", actor, note=f"routed to {assignment.organisation or 'nobody'}",
                    data={"organisation": assignment.organisation, "priority": assignment.priority,
                          "respond_by": assignment.respond_by.isoformat() if assignment.respond_by else None,
                          "resolve_by": assignment.resolve_by.isoformat() if assignment.resolve_by else None,
                          "routed": True}, public=False)


async def reassign(conn: AsyncConnection, incident_id: int, organisation_id: int, organisation: str, actor: str,
                   reason: str) -> None:
    """To another organisation, with the reason, in the history (its deadlines stay: they run from when
    the incident was registered)."""
    if not reason.strip():
        raise TransitionRefused("reassigning to another organisation needs a reason")
    current = await _lock(conn, incident_id)
    if current["organisation_id"] == organisation_id:
        raise TransitionRefused(f"the incident is already with {organisation}")
    await conn.execute(query("reassign_incident"), {"id": incident_id, "organisation_id": organisation_id})
    await add_event(conn, incident_id, "assignment", actor, note=reason,
                    data={"organisation": organisation, "from_organisation_id": current["organisation_id"],
                          "reason": reason}, public=False)


async def _follow_linked(conn: AsyncConnection, incident_id: int, target: str, actor: str) -> None:
    async with conn.cursor() as cur:
        await cur.execute(query("linked_open_reports"), {"id": incident_id})
        linked = await cur.fetchall()
    for report_id, status in linked:
        await conn.execute(query("set_incident_status"), {"id": report_id, "status": target, "assignee": None})
        await add_event(conn, report_id, "status", actor, from_status=status, to_status=target,
                        note=f"{target} with incident {incident_id}")


async def follow_linked_after_rule(conn: AsyncConnection, incident_id: int, actor: str) -> None:
    """A device incident a rule resolved takes its linked citizen reports with it."""
    await _follow_linked(conn, incident_id, "resolved", actor)


REPORTER = "reporter"


async def reporter_comment(conn: AsyncConnection, incident_id: int, note: str,
                           data: dict[str, Any] | None = None) -> int:
    """The reporter writes on their own report (through their follow link, or an Open311 client's update):
    in its history for staff, on their follow page for them, never in Open311. Returns the event's id."""
    await _lock(conn, incident_id)
    async with conn.cursor() as cur:
        await cur.execute(query("insert_workflow_event"), {
            "incident_id": incident_id, "kind": "comment", "actor": REPORTER, "from_status": None, "to_status": None,
            "note": note, "data": Jsonb({"from_reporter": True, **(data or {})}), "public": False})
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def rate(conn: AsyncConnection, incident_id: int, rating: int, comment: str, now: datetime,
               reopen_at_or_below: int) -> bool:
    """The reporter's rating of the outcome, once the report is resolved or closed, and only once. A rating
    at or below `reopen_at_or_below` reopens it for review (0: never); returns whether it did."""
    current = await _lock(conn, incident_id)
    if current["status"] not in ("resolved", "closed"):
        raise TransitionRefused("a report can be rated once it is resolved")
    if current["rating"] is not None:
        raise TransitionRefused("this report has been rated already")
    await conn.execute(query("rate_incident"), {"id": incident_id, "rating": rating, "comment": comment or None,
                                                "at": now})
    await add_event(conn, incident_id, "rating", REPORTER, note=f"{rating}/5" + (f": {comment}" if comment else ""),
                    data={"rating": rating}, public=False)
    if rating <= reopen_at_or_below and current["duplicate_of"] is None:
        await transition(conn, incident_id, "reopen", REPORTER, note=f"reopened for review: rated {rating}/5",
                         public=False)
        return True
    return False


async def comment(conn: AsyncConnection, incident_id: int, actor: str, note: str, public: bool,
                  data: dict[str, Any] | None = None) -> None:
    await _lock(conn, incident_id)
    await add_event(conn, incident_id, "comment", actor, note=note, public=public, data=data)


async def link_to_matching(conn: AsyncConnection, report_id: int, service_code: str, lat: float, lon: float,
                           jurisdiction: str, within_m: float, now: datetime, window: timedelta = timedelta(days=2),
                           actor: str = "system") -> int | None:
    """Links a report not linked yet to the open device incident of its service nearest (lat, lon) (a
    report given by address: the place it was matched to); the incident's id, or None."""
    async with conn.cursor() as cur:
        await cur.execute(query("matching_device_incident"), {
            "lat": lat, "lon": lon, "service_code": service_code, "since": now - window, "distance_m": within_m,
            "jurisdiction": jurisdiction})
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(query("link_report"), {"id": report_id, "to": row[0]})
        if cur.rowcount == 0:
            return None
    linked_to = int(row[0])
    await add_event(conn, report_id, "link", actor, note=f"linked to incident {linked_to}",
                    data={"linked_to": linked_to}, public=False)
    await add_event(conn, linked_to, "link", actor, note=f"citizen report {report_id} linked",
                    data={"report": report_id}, public=False)
    return linked_to


async def mark_duplicate(conn: AsyncConnection, incident_id: int, of_id: int, actor: str) -> None:
    if incident_id == of_id:
        raise TransitionRefused("an incident cannot duplicate itself")
    first, second = sorted((incident_id, of_id))  # lock in id order: no deadlock between two merges
    rows = {first: await _lock(conn, first), second: await _lock(conn, second)}
    duplicate, original = rows[incident_id], rows[of_id]
    if original["duplicate_of"] is not None:
        raise TransitionRefused(f"incident {of_id} is itself a duplicate of {original['duplicate_of']}")
    if duplicate["status"] == "closed":
        raise TransitionRefused(f"incident {incident_id} is already closed")
    await conn.execute(query("mark_duplicate"), {"id": incident_id, "of": of_id})
    await add_event(conn, incident_id, "merge", actor, from_status=duplicate["status"], to_status="closed",
                    note=f"duplicate of incident {of_id}", data={"duplicate_of": of_id})
    await add_event(conn, of_id, "merge", actor, note=f"incident {incident_id} merged into this one",
                    data={"duplicate": incident_id})


async def set_public_title(conn: AsyncConnection, incident_id: int, public_title: str | None, actor: str) -> None:
    """What Open311 calls the incident from now on; None goes back to its service's name."""
    await _lock(conn, incident_id)
    await conn.execute(query("set_public_title"), {"id": incident_id, "public_title": public_title})
    await add_event(conn, incident_id, "edit", actor, note=f"public title: {public_title or '(the service name)'}",
                    data={"public_title": public_title}, public=False)


async def add_event(conn: AsyncConnection, incident_id: int, kind: str, actor: str, *, from_status: str | None = None,
                    to_status: str | None = None, note: str = "", data: dict[str, Any] | None = None,
                    public: bool = True) -> None:
    await conn.execute(query("insert_workflow_event"), {
        "incident_id": incident_id, "kind": kind, "actor": actor, "from_status": from_status,
        "to_status": to_status, "note": note, "data": Jsonb(data or {}), "public": public,
    })


async def lock_incident(conn: AsyncConnection, incident_id: int) -> dict[str, Any]:
    """The incident's row, locked for the transaction; IncidentNotFound when there is none."""
    return await _lock(conn, incident_id)


async def _lock(conn: AsyncConnection, incident_id: int) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("lock_incident"), {"id": incident_id})
        row = await cur.fetchone()
    if row is None:
        raise IncidentNotFound(f"no incident {incident_id}")
    return row
