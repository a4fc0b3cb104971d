"""The staff API for devices: status (reporting or silent) with the last reading, telemetry of one device
over a time range (averaged per bucket when long), and GeoJSON for maps."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from psycopg.rows import dict_row

from gateway.api.auth import Staff, requires
from gateway.api.bounds import Text, Time
from gateway.api.context import ApiContext, context
from gateway.store.queries import query

router = APIRouter(prefix="/api/v1", tags=["devices"])
Ctx = Annotated[ApiContext, Depends(context)]
Viewer = Annotated[Staff, Depends(requires("viewer", city=True))]
ScopedViewer = Annotated[Staff, Depends(requires("viewer"))]
DeviceId = Annotated[Text, Path(max_length=200)]
# A device is silent once it has missed this many expected reports (as the sensor-silent rule ships).
SILENT_AFTER_REPORTS = 3


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _status(row: dict[str, Any], api: ApiContext, now: datetime) -> str:
    profile = api.profiles.by_name.get(row["profile"])
    interval = (row["attributes"] or {}).get("expected_interval_s") or (
        profile.config.defaults.expected_interval_s if profile else None)
    if row["last_seen"] is None:
        return "never_seen"
    if interval and now - row["last_seen"] > timedelta(seconds=float(interval) * SILENT_AFTER_REPORTS):
        return "silent"
    return "reporting"


async def _overview(api: ApiContext, staff: Staff, kind: str | None, device_id: str | None,
                    limit: int) -> list[dict[str, Any]]:
    """The devices of the staff's municipality (another's answer as if they did not exist)."""
    now = api.clock()
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("devices_overview"), {"kind": kind, "device_id": device_id, "limit": limit,
                                                      "jurisdiction": staff.scope.jurisdiction})
        rows = await cur.fetchall()
    devices = []
    for row in rows:
        reading_keys = ("reading_time", "reading_lat", "reading_lon", "speed_kmh", "fill_pct", "temperature_c",
                        "battery_pct", "tilted", "event")
        last = {k.removeprefix("reading_"): row.pop(k) for k in reading_keys}
        device = _jsonable(row)
        device["status"] = _status(row, api, now)
        device["last_reading"] = _jsonable(last) if last["time"] is not None else None
        devices.append(device)
    return devices


@router.get("/devices")
async def list_devices(
    api: Ctx, staff: Viewer, kind: Annotated[Text | None, Query(max_length=100)] = None,
    status: Literal["reporting", "silent", "never_seen"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> dict[str, Any]:
    devices = await _overview(api, staff, kind, None, limit)
    return {"items": [d for d in devices if status is None or d["status"] == status]}


@router.get("/devices/{device_id}")
async def get_device(device_id: DeviceId, api: Ctx, staff: Viewer) -> dict[str, Any]:
    found = await _overview(api, staff, None, device_id, 1)
    if not found:
        raise HTTPException(404, f"no device {device_id!r}")
    return found[0]


@router.get("/devices/{device_id}/telemetry")
async def telemetry(
    device_id: DeviceId, api: Ctx, staff: Viewer, start: Time | None = None, end: Time | None = None,
    max_points: Annotated[int, Query(ge=10, le=10000)] = 1000,
) -> dict[str, Any]:
    end = end or api.clock()
    start = start or end - timedelta(days=1)
    if end <= start:
        raise HTTPException(400, "end must be after start")
    if end - start > timedelta(days=366):
        raise HTTPException(400, "at most a year at a time")
    if not await _overview(api, staff, None, device_id, 1):
        raise HTTPException(404, f"no device {device_id!r}")
    params = {"device_id": device_id, "start": start, "end": end}
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("telemetry_count"), params)
        counted = await cur.fetchone()
        count = int(counted["count"]) if counted else 0
        if count <= max_points:
            await cur.execute(query("telemetry_range"), params)
            bucket = None
        else:
            bucket = timedelta(seconds=max(1, int((end - start).total_seconds() / max_points) + 1))
            await cur.execute(query("telemetry_downsampled"), {**params, "bucket": bucket})
        rows = await cur.fetchall()
    return {"device_id": device_id, "start": start.isoformat(), "end": end.isoformat(), "readings": count,
            "bucket_s": bucket.total_seconds() if bucket else None, "points": [_jsonable(r) for r in rows]}


def _feature(lon: float, lat: float, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": _jsonable(properties)}


@router.get("/map/incidents.geojson", summary="Open incidents, for maps")
async def incidents_map(api: Ctx, staff: ScopedViewer,
                        limit: Annotated[int, Query(ge=1, le=10000)] = 5000) -> dict[str, Any]:
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("open_incidents_with_place"),
                          {"limit": limit, "organisations": staff.scope.organisations,
                           "jurisdiction": staff.scope.jurisdiction})
        rows = await cur.fetchall()
    features = [_feature(row.pop("lon"), row.pop("lat"), row) for row in rows]
    return {"type": "FeatureCollection", "features": features}


@router.get("/map/devices.geojson", summary="Devices' latest positions, for maps")
async def devices_map(api: Ctx, staff: Viewer) -> dict[str, Any]:
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("latest_positions"), {"jurisdiction": staff.scope.jurisdiction})
        rows = await cur.fetchall()
    features = [_feature(row.pop("lon"), row.pop("lat"), row) for row in rows]
    return {"type": "FeatureCollection", "features": features}
