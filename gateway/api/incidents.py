"""The staff API for incidents: listing with filters and cursor pagination, one incident with its history,
workflow actions, comments, duplicates, public titles, reassignment to another organisation, staff or
partner reports, statistics, and the organisations.

A partner's token sees only the incidents routed to its organisation: any other answers 404, in lists,
counts and actions alike.

Every parameter is bounded (gateway/api/bounds.py): a value out of bounds is refused with a 4xx naming it."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.api.auth import Staff, requires
from gateway.api.bounds import MAX_ID, Text, Time
from gateway.api.context import ApiContext, context
from gateway.api.ledger import collection_stats
from gateway.organisation.directory import normalized_email
from gateway.organisation.scope import NotPermitted, require_in_scope
from gateway.store.queries import query
from gateway.store.workflow import (
    TRANSITIONS,
    IncidentNotFound,
    NewReport,
    TransitionRefused,
    comment,
    create_report,
    mark_duplicate,
    reassign,
    set_public_title,
    transition,
)

router = APIRouter(prefix="/api/v1", tags=["incidents"])
Ctx = Annotated[ApiContext, Depends(context)]
Viewer = Annotated[Staff, Depends(requires("viewer"))]
Operator = Annotated[Staff, Depends(requires("operator"))]

IncidentId = Annotated[int, Path(ge=1, le=MAX_ID)]
Status = Literal["open", "acknowledged", "assigned", "in_progress", "resolved", "closed"]
Source = Literal["citizen", "staff", "partner", "device_rule"]
Code = Annotated[Text, Field(max_length=100)]


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["acknowledge", "assign", "start", "resolve", "close", "reopen"]
    note: Text = Field(default="", max_length=4000)
    assignee: Text | None = Field(default=None, max_length=200, description="department, partner entity or person")
    public: bool = Field(default=True, description="whether the note shows in Open311 status_notes")


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text = Field(min_length=1, max_length=4000)
    public: bool = False


class Duplicate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    of: int = Field(ge=1, le=MAX_ID, description="the incident this one duplicates")


class PublicTitle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_title: Text | None = Field(max_length=200, description="what Open311 shows; null: the service's name")


class Reassign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation: Annotated[Text, Field(max_length=64, description="the slug of the organisation")]
    reason: Text = Field(min_length=1, max_length=4000)


class Caller(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(default="", max_length=200)
    phone: Text = Field(default="", max_length=50, pattern=r"^[0-9+ ()./-]*$")
    email: Text = Field(default="", max_length=200)

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalized_email(value) if value.strip() else ""


class StaffReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_code: Code
    source: Literal["staff", "partner"] = "staff"
    channel: Literal["phone", "counter", "letter", "email", "partner"] | None = Field(
        default=None, description="how it reached the city (default: partner for a partner, phone for staff)")
    caller: Caller | None = Field(default=None, description="who to call back (never public)")
    description: Text = Field(default="", max_length=4000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: Text | None = Field(default=None, max_length=500)


def _public(row: dict[str, Any], with_reporter: bool = False) -> dict[str, Any]:
    out = {key: (value.isoformat() if isinstance(value, datetime) else value) for key, value in row.items()
           if key not in ("reporter", "dedupe_key")}
    if with_reporter:
        out["reporter"] = row.get("reporter")
    return out


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        last_id = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise HTTPException(400, "invalid cursor") from None
    if not 0 <= last_id <= MAX_ID:
        raise HTTPException(400, "invalid cursor")
    return last_id


def _bbox(bbox: str | None) -> tuple[float | None, float | None, float | None, float | None]:
    if not bbox:
        return None, None, None, None
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in bbox.split(","))
    except ValueError:
        raise HTTPException(400, "bbox is min_lon,min_lat,max_lon,max_lat") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise HTTPException(400, "bbox corners out of order or out of range")
    return min_lon, min_lat, max_lon, max_lat


@router.get("/incidents")
async def list_incidents(
    api: Ctx, staff: Viewer,
    status: Annotated[list[Status] | None, Query()] = None,
    source: Annotated[list[Source] | None, Query()] = None,
    service_code: Annotated[list[Code] | None, Query(max_length=100)] = None,
    device_id: Annotated[Text | None, Query(max_length=200)] = None,
    bbox: Annotated[str | None, Query(max_length=200, description="min_lon,min_lat,max_lon,max_lat")] = None,
    created_from: Time | None = None,
    created_to: Time | None = None,
    organisation: Annotated[Text | None, Query(max_length=64, description="an organisation's slug")] = None,
    contact: Annotated[Text | None, Query(max_length=200, description="a reporter's e-mail or phone: their "
                                                                       "reports (operators)")] = None,
    overdue: Annotated[bool | None, Query(description="open past its resolve_by (true) or not (false)")] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    min_lon, min_lat, max_lon, max_lat = _bbox(bbox)
    params = {"status": status, "source": source, "service_code": service_code, "device_id": device_id,
              "min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat,
              "created_from": created_from, "created_to": created_to, "before_id": _decode_cursor(cursor),
              "limit": limit, "organisations": staff.scope.organisations, "overdue": overdue, "now": api.clock(),
              "organisation": _organisation_id(api, staff, organisation) if organisation else None,
              "jurisdiction": staff.scope.jurisdiction, **_contact(contact, staff)}
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("list_incidents"), params)
        rows = await cur.fetchall()
    return {"items": [_public(row) for row in rows],
            "next_cursor": _cursor(rows[-1]["id"]) if len(rows) == limit else None}


@router.get("/incidents/{incident_id}")
async def get_incident(incident_id: IncidentId, api: Ctx, staff: Viewer) -> dict[str, Any]:
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("incident_by_id"), {"id": incident_id})
        row = await cur.fetchone()
        if row is None or not staff.scope.covers(row["organisation_id"], row["jurisdiction_id"]):
            raise HTTPException(404, f"no incident {incident_id}")
        await cur.execute(query("incident_events"), {"id": incident_id, "public_only": False})
        events = await cur.fetchall()
    incident = _public(row, with_reporter=staff.role != "viewer")
    incident["organisation"] = _slug_of(api, staff, row["organisation_id"])
    incident["overdue"] = _overdue(row, api.clock())
    incident["events"] = [_public(event) for event in events]
    return incident


def _contact(contact: str | None, staff: Staff) -> dict[str, str | None]:
    """One citizen's reports (a CRM's contact history): by e-mail, or by the digits of a phone number.
    Personal data: operators only."""
    if not contact:
        return {"contact_email": None, "contact_phone": ""}
    if staff.role == "viewer":
        raise HTTPException(403, "looking a reporter up needs the operator role")
    if "@" in contact:
        return {"contact_email": contact.strip().lower(), "contact_phone": ""}
    digits = "".join(ch for ch in contact if ch.isdigit())
    if len(digits) < 6:
        raise HTTPException(422, "contact is an e-mail address or a phone number")
    return {"contact_email": "", "contact_phone": digits}


def _organisation_id(api: ApiContext, staff: Staff, slug: str) -> int:
    org = api.city(staff.scope.jurisdiction).by_slug.get(slug)
    if org is None:
        raise HTTPException(422, f"unknown organisation {slug!r}")
    return org.id


def _slug_of(api: ApiContext, staff: Staff, organisation_id: int | None) -> str | None:
    orgs = api.city(staff.scope.jurisdiction).organisations
    return next((org.slug for org in orgs if org.id == organisation_id), None)


def _overdue(row: dict[str, Any], now: datetime) -> bool:
    return row["resolve_by"] is not None and row["status"] not in ("resolved", "closed") and row["resolve_by"] < now


async def _act(api: ApiContext, incident_id: int, work: Any, staff: Staff, *others: int) -> dict[str, Any]:
    try:
        async with api.pool.connection() as conn, conn.transaction():
            for checked in (incident_id, *others):
                await require_in_scope(conn, checked, staff.scope, "operator", staff.role)
            result: dict[str, Any] = await work(conn)
    except IncidentNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except NotPermitted as exc:
        raise HTTPException(403, str(exc)) from None
    except TransitionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return result


@router.post("/incidents/{incident_id}/actions", summary=f"Workflow: {', '.join(TRANSITIONS)}")
async def act(incident_id: IncidentId, body: Action, api: Ctx, staff: Operator) -> dict[str, Any]:
    async def work(conn: Any) -> dict[str, Any]:
        status = await transition(conn, incident_id, body.action, staff.actor, body.note, body.assignee, body.public)
        return {"id": incident_id, "status": status}

    return await _act(api, incident_id, work, staff)


@router.post("/incidents/{incident_id}/comments", status_code=201)
async def add_comment(incident_id: IncidentId, body: Comment, api: Ctx, staff: Operator) -> dict[str, Any]:
    async def work(conn: Any) -> dict[str, Any]:
        await comment(conn, incident_id, staff.actor, body.note, body.public)
        return {"id": incident_id}

    return await _act(api, incident_id, work, staff)


@router.post("/incidents/{incident_id}/duplicate")
async def duplicate(incident_id: IncidentId, body: Duplicate, api: Ctx, staff: Operator) -> dict[str, Any]:
    async def work(conn: Any) -> dict[str, Any]:
        await mark_duplicate(conn, incident_id, body.of, staff.actor)
        return {"id": incident_id, "status": "closed", "duplicate_of": body.of}

    return await _act(api, incident_id, work, staff, body.of)


@router.post("/incidents/{incident_id}/reassign", summary="To another organisation, with a reason")
async def reassign_incident(incident_id: IncidentId, body: Reassign, api: Ctx, staff: Operator) -> dict[str, Any]:
    organisation_id = _organisation_id(api, staff, body.organisation)

    async def work(conn: Any) -> dict[str, Any]:
        await reassign(conn, incident_id, organisation_id, body.organisation, staff.actor, body.reason)
        return {"id": incident_id, "organisation": body.organisation}

    return await _act(api, incident_id, work, staff)


@router.get("/organisations", summary="Departments and partner entities (a partner's token: its own)")
async def list_organisations(api: Ctx, staff: Viewer) -> dict[str, Any]:
    orgs = api.city(staff.scope.jurisdiction).organisations
    return {"items": [{"slug": o.slug, "name": o.name, "kind": o.kind, "emails": list(o.emails)}
                      for o in orgs if staff.scope.covers(o.id)]}


@router.put("/incidents/{incident_id}/public_title", summary="What Open311 calls the incident")
async def public_title(incident_id: IncidentId, body: PublicTitle, api: Ctx, staff: Operator) -> dict[str, Any]:
    title = (body.public_title or "").strip() or None

    async def work(conn: Any) -> dict[str, Any]:
        await set_public_title(conn, incident_id, title, staff.actor)
        return {"id": incident_id, "public_title": title}

    return await _act(api, incident_id, work, staff)


@router.post("/incidents", status_code=201, summary="A report by staff or a partner entity")
async def create_incident(body: StaffReport, api: Ctx, staff: Operator) -> dict[str, Any]:
    city = api.city(staff.scope.jurisdiction)
    service = next((s for s in city.catalogue.services if s.service_code == body.service_code), None)
    if service is None:
        raise HTTPException(422, f"unknown service_code {body.service_code!r}")
    if (body.lat is None) != (body.lon is None):
        raise HTTPException(422, "lat and lon go together")
    caller = {key: value for key, value in (body.caller.model_dump() if body.caller else {}).items() if value}
    channel = body.channel or ("partner" if body.source == "partner" else "phone")
    report = NewReport(body.source, body.service_code, service.service_name, body.description, body.lat, body.lon,
                       body.address, None, {}, {**caller, "staff": staff.name, "channel": channel}, city.id, channel)
    async with api.pool.connection() as conn, conn.transaction():
        incident_id, linked_to = await create_report(
            conn, report, api.clock(), api.settings.correlation_distance_m,
            timedelta(seconds=api.settings.correlation_window_s), api.cities)
    return {"id": incident_id, "linked_to": linked_to}


@router.get("/stats", summary="Incidents by category, source and status; median time to resolve",
            description="Incidents opened in [start, end) (by default the 30 days to now). Time to resolve runs "
                        "from when the problem was seen to its resolution: for device incidents from the opening "
                        "reading's device time, for reports from their creation (see the incident_stats query).")
async def stats(api: Ctx, staff: Viewer, start: Time | None = None, end: Time | None = None) -> dict[str, Any]:
    end = end or api.clock()
    start = start or end - timedelta(days=30)
    if end <= start:
        raise HTTPException(400, "end must be after start")
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("incident_stats"), {"start": start, "end": end, "now": api.clock(),
                                                    "organisations": staff.scope.organisations,
                                                    "jurisdiction": staff.scope.jurisdiction})
        rows = await cur.fetchall()
        await cur.execute(query("rating_stats"), {"start": start, "end": end, "jurisdiction": staff.scope.jurisdiction,
                                                  "organisations": staff.scope.organisations})
        ratings = await cur.fetchall()
    collection = await collection_stats(api, staff.scope, start, end)
    result: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(), "by_service_code": {},
                              "by_source": {}, "by_status": {}, "by_organisation": {}, "by_channel": {},
                              "ratings": {"by_service_code": {}, "by_organisation": {}, "by_month": {}}}
    for row in ratings:  # the quality measure: the reporters' ratings given in the period
        entry = {"ratings": row["ratings"], "average": row["average"]}
        if row["service_code"] is not None:
            result["ratings"]["by_service_code"][row["service_code"]] = entry
        elif row["organisation"] is not None:
            result["ratings"]["by_organisation"][row["organisation"] or "(none)"] = entry
        else:
            result["ratings"]["by_month"][row["month"]] = entry
    for row in rows:
        entry = {"incidents": row["incidents"], "median_resolve_s": row["median_resolve_s"], "overdue": row["overdue"]}
        if row["organisation"] is not None:
            result["by_organisation"][row["organisation"] or "(none)"] = entry
        elif row["channel"] is not None:
            result["by_channel"][row["channel"] or "(none)"] = entry
        elif row["service_code"] is not None:
            result["by_service_code"][row["service_code"]] = entry
        elif row["source"] is not None:
            result["by_source"][row["source"]] = entry
        elif row["status"] is not None:
            result["by_status"][row["status"]] = entry
        else:
            result["total"] = entry
    if collection is not None:
        result["collection"] = collection  # the ledger's figures: city staff only
    return result
