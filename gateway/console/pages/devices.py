"""Devices: a list with their status (reporting, silent, never seen, battery low) and a search; a device's
page with its attributes, its newest reading, charts of its telemetry over a chosen range (averaged per
bucket, so a year answers as fast as a day), and for a truck a day's route to replay with its bin lifts."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from psycopg.rows import dict_row

from gateway.api.context import ApiContext
from gateway.console.charts import Series, line_chart
from gateway.console.i18n import translations
from gateway.console.session import CityPage, ConsoleError, context_of
from gateway.console.templating import render
from gateway.devices import reporting_status
from gateway.store.queries import query

router = APIRouter()

RANGES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30), "365d": timedelta(days=365)}
CHART_POINTS = 400
ROUTE_POINTS = 2000
BATTERY_LOW_PCT = 20.0
# Attributes that are a person's data (a household's tag and address) or a vehicle's plate: operators only.
PERSONAL_ATTRIBUTES = frozenset({"rfid", "address", "plate", "household", "phone", "email"})
FIELDS = {"container": (("fill_pct", "%"), ("temperature_c", " °C"), ("battery_pct", "%")),
          "truck": (("speed_kmh", " km/h"),)}
DeviceId = Annotated[str, Path(min_length=1, max_length=200)]


def _status(api: ApiContext, row: dict[str, Any], now: datetime) -> list[str]:
    status = [reporting_status(row["reading_time"], api.expected_interval_s(row["profile"], row["attributes"]), now)]
    if row.get("battery_pct") is not None and row["battery_pct"] < BATTERY_LOW_PCT:
        status.append("battery_low")
    return status


@router.get("/devices")
async def device_list(
    request: Request, user: CityPage,
    q: Annotated[str, Query(max_length=200)] = "",
    kind: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[Literal["", "reporting", "silent", "never_seen", "battery_low"], Query()] = "",
) -> Response:
    api = context_of(request)
    now = api.clock()
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("console_devices"), {"kind": kind or None, "text": q or None, "limit": 20_000,
                                                     "jurisdiction": user.scope.jurisdiction})
        rows = await cur.fetchall()
        await cur.execute(query("console_device_kinds"), {"jurisdiction": user.scope.jurisdiction})
        kinds = await cur.fetchall()
    for row in rows:
        row["status"] = _status(api, row, now)
    shown = [row for row in rows if not status or status in row["status"]]
    return render(request, "devices.html", devices=shown[:1000], total=len(shown), kinds=kinds,
                  filters={"q": q, "kind": kind, "status": status})


@router.get("/devices/{device_id}")
async def device_page(
    request: Request, user: CityPage, device_id: DeviceId,
    range_: Annotated[Literal["1d", "7d", "30d", "365d"], Query(alias="range")] = "1d",
    day: Annotated[date | None, Query(ge=date(2000, 1, 1), le=date(2100, 1, 1))] = None,
) -> Response:
    api = context_of(request)
    _ = translations(request.state.language).gettext
    now = api.clock()
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("devices_overview"), {"kind": None, "device_id": device_id, "limit": 1,
                                                      "jurisdiction": user.scope.jurisdiction})
        device = await cur.fetchone()
        if device is None:
            raise ConsoleError(404, _("There is no device %(id)s.") % {"id": device_id})
        end = now
        start = end - RANGES[range_]
        bucket = timedelta(seconds=max(1, int((end - start).total_seconds() / CHART_POINTS)))
        await cur.execute(query("telemetry_downsampled"), {"device_id": device_id, "start": start, "end": end,
                                                           "bucket": bucket})
        points = await cur.fetchall()
    device["status"] = _status(api, device, now)
    attributes = dict(device["attributes"] or {})
    if not user.may("operator"):
        attributes = {k: ("…" if k in PERSONAL_ATTRIBUTES else v) for k, v in attributes.items()}
    charts = [(field, line_chart(Series([(p["time"], p[field]) for p in points if p.get(field) is not None],
                                        field, unit)))
              for field, unit in FIELDS.get(device["kind"], FIELDS["container"])]
    route_day = day or now.date()
    return render(request, "device.html", device=device, attributes=attributes, charts=charts, range=range_,
                  ranges=list(RANGES), route_day=route_day.isoformat(), is_truck=device["kind"] == "truck",
                  tiles_url=api.settings.map_tiles_url)


@router.get("/devices/{device_id}/route.json")
async def route(
    request: Request, user: CityPage, device_id: DeviceId,
    day: Annotated[date, Query(ge=date(2000, 1, 1), le=date(2100, 1, 1))],
) -> JSONResponse:
    """A day's positions (thinned to at most ROUTE_POINTS) and bin lifts of one truck, in UTC days."""
    api = context_of(request)
    start = datetime.combine(day, time(0), api.clock().tzinfo)
    end = start + timedelta(days=1)
    bucket = timedelta(seconds=max(1, 86400 // ROUTE_POINTS))
    params = {"device_id": device_id, "start": start, "end": end}
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("devices_overview"), {"kind": None, "device_id": device_id, "limit": 1,
                                                      "jurisdiction": user.scope.jurisdiction})
        if await cur.fetchone() is None:  # another municipality's truck does not exist here
            _ = translations(request.state.language).gettext
            raise ConsoleError(404, _("There is no device %(id)s.") % {"id": device_id})
        await cur.execute(query("console_route"), {**params, "bucket": bucket})
        track = await cur.fetchall()
        await cur.execute(query("console_lifts"), params)
        lifts = await cur.fetchall()
    stops = _stops(track)
    show_tags = user.may("operator")
    return JSONResponse({
        "track": [[p["time"].isoformat(), p["lat"], p["lon"], p["speed_kmh"]] for p in track],
        "lifts": [[lift["time"].isoformat(), lift["lat"], lift["lon"], lift["rfid"] if show_tags else None]
                  for lift in lifts if lift["lat"] is not None],
        "stops": stops,
    })


def _stops(track: list[dict[str, Any]], min_stop: timedelta = timedelta(minutes=2)) -> list[list[Any]]:
    """Where the truck stood still (speed under 1 km/h) for at least `min_stop`: [start, end, lat, lon]."""
    stops: list[list[Any]] = []
    run: list[dict[str, Any]] = []
    for point in [*track, None]:
        if point is not None and point["speed_kmh"] is not None and point["speed_kmh"] < 1.0:
            run.append(point)
            continue
        if run and run[-1]["time"] - run[0]["time"] >= min_stop:
            stops.append([run[0]["time"].isoformat(), run[-1]["time"].isoformat(), run[0]["lat"], run[0]["lon"]])
        run = []
    return stops
