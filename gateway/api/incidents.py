"""The staff API for incidents: listing with filters and cursor pagination, one incident with its history,
workflow actions, comments, duplicates, staff or partner reports, and statistics."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Staff, requires
from gateway.api.context import ApiContext, context
from gateway.store.queries import query
from gateway.store.workflow import (
    TRANSITIONS,
    IncidentNotFound,
    NewReport,
    TransitionRefused,
    comment,
    create_report,
    mark_duplicate,
    transition,
)

router = APIRouter(prefix="/api/v1", tags=["incidents"])
Ctx = Annotated[ApiContext, Depends(context)]
Viewer = Annotated[Staff, Depends(requires("viewer"))]
Operator = Annotated[Staff, Depends(requires("operator"))]

Status = Literal["open", "acknowledged", "assigned", "in_progress", "resolved", "closed"]
Source = Literal["citizen", "staff", "partner", "device_rule"]


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["acknowledge", "assign", "start", "resolve", "close", "reopen"]
    note: str = Field(default="", max_length=4000)
    assignee: str | None = Field(default=None, max_length=200, description="department, partner entity or person")
    public: bool = Field(default=True, description="whether the note shows in Open311 status_notes")


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=4000)
    public: bool = False


class Duplicate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    of: int = Field(ge=1, description="the incident this one duplicates")


class StaffReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_code: str
    source: Literal["staff", "partner"] = "staff"
    description: str = Field(default="", max_length=4000)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=500)


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
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise HTTPException(400, "invalid cursor") from None


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
    service_code: Annotated[list[str] | None, Query()] = None,
    device_id: str | None = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    min_lon, min_lat, max_lon, max_lat = _bbox(bbox)
    params = {"status": status, "source": source, "service_code": service_code, "device_id": device_id,
              "min_lon": min_lon, "min_lat": min_lat, "max_lon": max_lon, "max_lat": max_lat,
              "created_from": created_from, "created_to": created_to, "before_id": _decode_cursor(cursor),
              "limit": limit}
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("list_incidents"), params)
        rows = await cur.fetchall()
    return {"items": [_public(row) for row in rows],
            "next_cursor": _cursor(rows[-1]["id"]) if len(rows) == limit else None}


@router.get("/incidents/{incident_id}")
async def get_incident(incident_id: int, api: Ctx, staff: Viewer) -> dict[str, Any]:
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("incident_by_id"), {"id": incident_id})
        row = await cur.fetchone()
        if row is None:
            raise HTTPException(404, f"no incident {incident_id}")
        await cur.execute(query("incident_events"), {"id": incident_id, "public_only": False})
        events = await cur.fetchall()
    incident = _public(row, with_reporter=staff.role != "viewer")
    incident["events"] = [_public(event) for event in events]
    return incident


async def _act(api: ApiContext, incident_id: int, work: Any) -> dict[str, Any]:
    try:
        async with api.pool.connection() as conn, conn.transaction():
            result: dict[str, Any] = await work(conn)
    except IncidentNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except TransitionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return result


@router.post("/incidents/{incident_id}/actions", summary=f"Workflow: {', '.join(TRANSITIONS)}")
async def act(incident_id: int, body: Action, api: Ctx, staff: Operator) -> dict[str, Any]:
    async def work(conn: Any) -> dict[str, Any]:
        status = await transition(conn, incident_id, body.action, staff.actor, body.note, body.assignee, body.public)
        return {"id": incident_id, "status": status}

    return await _act(api, incident_id, work)


@router.post("/incidents/{incident_id}/comments", status_code=201)
async def add_comment(incident_id: int, body: Comment, api: Ctx, staff: Operator) -> dict[str, Any]:
    async def work(conn: Any) -> dict[str, Any]:
        await comment(conn, incident_id, staff.actor, body.note, body.public)
        return {"id": incident_id}

    return await _act(api, incident_id, work)


@router.post("/incidents/{incident_id}/duplicate")
async def duplicate(incident_id: int, body: Duplicate, api: Ctx, staff: Operator) -> dict[str, Any]:
    async def work(conn: Any) -> dict[str, Any]:
        await mark_duplicate(conn, incident_id, body.of, staff.actor)
        return {"id": incident_id, "status": "closed", "duplicate_of": body.of}

    return await _act(api, incident_id, work)


@router.post("/incidents", status_code=201, summary="A report by staff or a partner entity")
async def create_incident(body: StaffReport, api: Ctx, staff: Operator) -> dict[str, Any]:
    service = next((s for s in api.catalogue.services if s.service_code == body.service_code), None)
    if service is None:
        raise HTTPException(422, f"unknown service_code {body.service_code!r}")
    if (body.lat is None) != (body.lon is None):
        raise HTTPException(422, "lat and lon go together")
    report = NewReport(body.source, body.service_code, service.service_name, body.description, body.lat, body.lon,
                       body.address, None, {}, {"staff": staff.name})
    async with api.pool.connection() as conn, conn.transaction():
        incident_id, linked_to = await create_report(
            conn, report, api.clock(), api.settings.correlation_distance_m,
            timedelta(seconds=api.settings.correlation_window_s))
    return {"id": incident_id, "linked_to": linked_to}


@router.get("/stats", summary="Incidents by category, source and status; median time to resolve")
async def stats(api: Ctx, staff: Viewer, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    end = end or api.clock()
    start = start or end - timedelta(days=30)
    if end <= start:
        raise HTTPException(400, "end must be after start")
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("incident_stats"), {"start": start, "end": end})
        rows = await cur.fetchall()
    result: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(), "by_service_code": {},
                              "by_source": {}, "by_status": {}}
    for row in rows:
        entry = {"incidents": row["incidents"], "median_resolve_s": row["median_resolve_s"]}
        if row["service_code"] is not None:
            result["by_service_code"][row["service_code"]] = entry
        elif row["source"] is not None:
            result["by_source"][row["source"]] = entry
        elif row["status"] is not None:
            result["by_status"][row["status"]] = entry
        else:
            result["total"] = entry
    return result
