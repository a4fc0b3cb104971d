"""The collection ledger, its coverage and a day's plan, for staff of the city (a partner's token: 404).
The rows name households' addresses: operators and above; the coverage and the plan's figures: viewers too."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from psycopg.rows import dict_row

from gateway.api.auth import Staff, requires
from gateway.api.context import ApiContext, context
from gateway.ledger.book import Book
from gateway.ledger.keeping import Entry, entries
from gateway.ledger.kpis import collection_kpis
from gateway.ledger.report import coverage, row, select, to_csv
from gateway.organisation.scope import Scope
from gateway.plan.due import PlanRefused
from gateway.plan.export import geojson, summary
from gateway.plan.routes import RoutingUnavailable
from gateway.store.queries import query
from gateway.store.rule_state import load_rule_states_of

router = APIRouter(prefix="/api/v1", tags=["collection"])
Ctx = Annotated[ApiContext, Depends(context)]
CityViewer = Annotated[Staff, Depends(requires("viewer", city=True))]
CityOperator = Annotated[Staff, Depends(requires("operator", city=True))]
MAX_DAYS = 62
KPI_DAYS = 92
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)


def _bounded(day: date) -> date:
    if not EARLIEST <= day <= LATEST:
        raise HTTPException(400, f"dates are between {EARLIEST} and {LATEST}")
    return day


def _days(first: date, until: date | None) -> tuple[date, date]:
    last = _bounded(until or first)
    _bounded(first)
    if last < first:
        raise HTTPException(400, "until is before date")
    if (last - first).days >= MAX_DAYS:
        raise HTTPException(400, f"at most {MAX_DAYS} days at a time")
    return first, last


def _book(api: ApiContext, staff: Staff) -> Book:
    book = api.ledger_books().get(staff.scope.jurisdiction)
    if book is None:
        raise HTTPException(404, "no collection rule: no stop is on a collection schedule")
    return book


async def _entries(api: ApiContext, staff: Staff, first: date, last: date) -> list[Entry]:
    book = _book(api, staff)
    async with api.pool.connection() as conn:
        return await entries(conn, book, first, last, api.clock())


@router.get("/ledger", summary="Each stop due on the days (lifted, not presented, missed, pending) and each "
                               "lift off schedule (extra); CSV with format=csv")
async def ledger(api: Ctx, staff: CityOperator, date_: Annotated[date, Query(alias="date")],
                 until: date | None = None, round_: Annotated[str | None, Query(alias="round")] = None,
                 district: str | None = None, truck: str | None = None,
                 format_: Annotated[Literal["json", "csv"], Query(alias="format")] = "json") -> Any:
    first, last = _days(date_, until)
    chosen = select(await _entries(api, staff, first, last), round_, district, truck)
    if format_ == "csv":
        return Response(to_csv(chosen), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="ledger-{first.isoformat()}.csv"'})
    return {"date": first.isoformat(), "until": last.isoformat(), "rows": [row(e) for e in chosen]}


@router.get("/ledger/coverage", summary="Per day and round: stops due, served, missed, and the share served by hour")
async def ledger_coverage(api: Ctx, staff: CityViewer, date_: Annotated[date, Query(alias="date")],
                          until: date | None = None) -> dict[str, Any]:
    first, last = _days(date_, until)
    return {"rounds": coverage(await _entries(api, staff, first, last))}


@router.get("/plan", summary="A day's collection routes (wastegate plan): the containers due and a route per truck")
async def day_plan(api: Ctx, staff: CityViewer, date_: Annotated[date, Query(alias="date")],
                   threshold: Annotated[float, Query(gt=0, le=100)] = 80.0) -> dict[str, Any]:
    if api.planner is None:
        raise HTTPException(503, "plans are made by a gateway process: none runs here")
    _bounded(date_)
    try:
        made = await api.planner(date_, threshold, staff.scope.jurisdiction)
    except PlanRefused as exc:
        raise HTTPException(409, str(exc)) from None
    except RoutingUnavailable as exc:
        raise HTTPException(502, str(exc)) from None
    return {**summary(made), "geojson": geojson(made)}


async def collection_stats(api: ApiContext, scope: Scope, start: datetime, end: datetime) -> dict[str, Any] | None:
    """The collection KPIs of [start, end) for GET /api/v1/stats and the console: None without a collection
    rule, or for a partner's members (they are about the whole city)."""
    book = api.ledger_books().get(scope.jurisdiction)
    if book is None or not scope.is_city or not book.stops:
        return None
    tz = book.stops[0].tz
    first, last = start.astimezone(tz).date(), (end - timedelta(microseconds=1)).astimezone(tz).date()
    if (last - first).days >= KPI_DAYS:
        first = last - timedelta(days=KPI_DAYS - 1)  # the latest quarter of a longer period (said below)
    calendar = api.city(scope.jurisdiction).router.calendar
    async with api.pool.connection() as conn:
        found = await entries(conn, book, first, last + timedelta(days=7), api.clock())
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("overflow_hours"), {"start": start, "end": end,
                                                        "jurisdiction": scope.jurisdiction})
            overflow = await cur.fetchall()
        forecasting = api.forecast_rule_ids()
        states = await load_rule_states_of(conn, forecasting) if forecasting else []
    kpis = {"first_day": first.isoformat(), "last_day": last.isoformat(),
            **collection_kpis(found, first, last, calendar.is_working_day)}
    kpis["overflow_hours_by_container"] = {r["device_id"]: round(float(r["hours"]), 1) for r in overflow}
    errors = [e[1] for _, _, stored in states for e in (stored.get("s") or {}).get("err", [])
              if start.timestamp() <= e[0] < end.timestamp()]
    kpis["forecast_error_24h"] = {"overflows": len(errors),
                                  "mae_h": round(sum(errors) / len(errors), 2) if errors else None}
    return kpis
