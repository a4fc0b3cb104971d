"""The live map: trucks at their latest positions with a 15-minute trail, containers coloured by fill level
and status, open incidents, and the zone layers; kept current by server-sent events from what the store
has committed (devices whose `last_seen` moved, incidents with new events), polled once a second."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gateway.api.context import ApiContext
from gateway.console.session import Page, context_of
from gateway.console.templating import render
from gateway.devices import reporting_status
from gateway.organisation.scope import Scope
from gateway.store.queries import query

router = APIRouter()

LIVE_POLL_S = 1.0
# A live stream ends after this and the browser's EventSource reconnects: no connection outlives a stop
# of the server by long, and a changed session or role applies within it.
LIVE_LIFETIME_S = 120.0
BATTERY_LOW_PCT = 20.0
COMMIT_MARGIN = timedelta(seconds=3)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@router.get("/")
async def map_page(request: Request, user: Page) -> Response:
    api = context_of(request)
    return render(request, "map.html", tiles_url=api.settings.map_tiles_url,
                  attribution=api.settings.map_tiles_attribution)


@router.get("/map/data.json")
async def map_data(request: Request, user: Page) -> JSONResponse:
    api = context_of(request)
    async with api.pool.connection() as conn:
        data = await _snapshot(conn, None, api, user.scope)
        zones = _zone_files(api.city(user.scope.jurisdiction).files.rules_dir)
        data["zones"] = {name: json.loads(path.read_text(encoding="utf-8")) for name, path in sorted(zones.items())}
        data["cursor"] = await _last_event(conn)
    data["now"] = api.clock().isoformat()
    return JSONResponse(_jsonable(data))


@router.get("/live")
async def live(request: Request, user: Page,
               after: Annotated[int | None, Query(ge=0, le=2**62)] = None) -> StreamingResponse:
    api = context_of(request)
    stopping: asyncio.Event = request.app.state.console_stopping

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + LIVE_LIFETIME_S
        async with api.pool.connection() as conn:
            cursor = after if after is not None else await _last_event(conn)
        since = _wall_clock()
        yield "retry: 2000\n\n"
        while loop.time() < ends_at and not stopping.is_set() and not await request.is_disconnected():
            # `last_seen` is the receive time of a device's newest committed message (the wall clock, not
            # the gateway's injected one); a batch received just before a poll may commit just after it.
            polled_at = _wall_clock() - COMMIT_MARGIN
            async with api.pool.connection() as conn:
                changed = await _changed(conn, since, cursor, api, user.scope)
            since = polled_at
            if changed["incidents"]:
                cursor = max(i["last_event"] for i in changed["incidents"])
            if changed["trucks"] or changed["containers"] or changed["incidents"]:
                changed["cursor"] = cursor
                changed.pop("devices_seen")
                yield f"event: update\ndata: {json.dumps(_jsonable(changed))}\n\n"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=LIVE_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _snapshot(conn: AsyncConnection, device_ids: list[str] | None, api: ApiContext,
                    scope: Scope) -> dict[str, Any]:
    """A partner's members see their incidents on the map, not the city's fleet and containers."""
    if not scope.is_city:
        own: list[dict[str, Any]] = []
        if device_ids is None:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("open_incidents_with_place"),
                                  {"limit": 5000, "organisations": scope.organisations,
                                   "jurisdiction": scope.jurisdiction})
                own = await cur.fetchall()
        return {"trucks": [], "containers": [], "incidents": own}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("console_open_incidents_by_device"), {"jurisdiction": scope.jurisdiction})
        open_by_device = {row["device_id"]: row["service_codes"] for row in await cur.fetchall()}
        await cur.execute(query("console_trucks"), {"device_ids": device_ids, "jurisdiction": scope.jurisdiction})
        trucks = await cur.fetchall()
        await cur.execute(query("console_containers"),
                          {"device_ids": device_ids, "jurisdiction": scope.jurisdiction})
        containers = await cur.fetchall()
        incidents: list[dict[str, Any]] = []
        if device_ids is None:
            await cur.execute(query("open_incidents_with_place"),
                              {"limit": 5000, "organisations": None, "jurisdiction": scope.jurisdiction})
            incidents = await cur.fetchall()
    now = api.clock()
    for container in containers:
        container["status"] = _status(container, open_by_device.get(container["device_id"], []), api, now)
        for private in ("profile", "expected_interval_s", "reading_time"):
            container.pop(private, None)
    return {"trucks": trucks, "containers": containers, "incidents": incidents}


async def _changed(conn: AsyncConnection, since: datetime, cursor: int, api: ApiContext,
                   scope: Scope) -> dict[str, Any]:
    seen: list[str] = []
    async with conn.cursor(row_factory=dict_row) as cur:
        if scope.is_city:
            await cur.execute(query("console_devices_seen_since"), {"since": since, "jurisdiction": scope.jurisdiction})
            seen = [row["device_id"] for row in await cur.fetchall()]
        await cur.execute(query("console_incidents_changed_since"),
                          {"after": cursor, "organisations": scope.organisations,
                           "jurisdiction": scope.jurisdiction})
        incidents = await cur.fetchall()
    changed = await _snapshot(conn, seen, api, scope) if seen else {"trucks": [], "containers": []}
    changed["incidents"] = incidents
    changed["devices_seen"] = seen
    return changed


async def _last_event(conn: AsyncConnection) -> int:
    async with conn.cursor() as cur:
        await cur.execute(query("console_last_event_id"))
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _status(container: dict[str, Any], open_codes: list[str], api: ApiContext, now: datetime) -> list[str]:
    """What a container's marker shows besides its fill: its open incidents' services, and its own flags."""
    status = list(open_codes)
    interval = api.expected_interval_s(container["profile"], {"expected_interval_s": container["expected_interval_s"]})
    reporting = reporting_status(container.get("reading_time"), interval, now)
    if reporting != "reporting":
        status.append(reporting)
    if container.get("tilted"):
        status.append("tilted")
    battery = container.get("battery_pct")
    if battery is not None and battery < BATTERY_LOW_PCT:
        status.append("battery_low")
    return sorted(set(status))


def _zone_files(rules_dir: Path) -> dict[str, Any]:
    zones = rules_dir / "zones"
    return {path.stem: path for path in zones.glob("*.geojson")} if zones.is_dir() else {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
