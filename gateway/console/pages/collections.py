"""Collections: a day's ledger (each round's coverage, hour by hour; each stop lifted, not presented, missed
or pending, and the lifts off schedule) with its CSV, the collection figures of the last 30 days, and a
day's plan (a route per truck on the map, its driver's list). About the city as a whole: not shown to a
partner's members; the stops' addresses to operators only."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from gateway.api.ledger import collection_stats
from gateway.console.i18n import translations
from gateway.console.session import CityOperatorPage, CityPage, ConsoleError, context_of
from gateway.console.templating import render
from gateway.ledger.keeping import entries
from gateway.ledger.report import coverage, row, select, to_csv
from gateway.plan.due import PlanRefused
from gateway.plan.export import geojson, summary
from gateway.plan.routes import RoutingUnavailable

router = APIRouter()
Day = Annotated[str | None, Query(max_length=10)]
Filter = Annotated[str | None, Query(max_length=200)]


EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)


def _today(request: Request) -> date:
    """Today where the collections are (the schedule's time zone), not in UTC."""
    api = context_of(request)
    book = api.ledger_books().get(request.state.user.scope.jurisdiction)
    now = api.clock()
    return now.astimezone(book.stops[0].tz).date() if book and book.stops else now.date()


def _day(request: Request, raw: str | None, default: date) -> date:
    if not raw:
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or not EARLIEST <= day <= LATEST:
        _ = translations(request.state.language).gettext
        raise ConsoleError(400, _("The date is not a date (YYYY-MM-DD).")) from None
    return day


async def _ledger(request: Request, day: date) -> list[Any]:
    api = context_of(request)
    book = api.ledger_books().get(request.state.user.scope.jurisdiction)
    if book is None:
        return []
    async with api.pool.connection() as conn:
        return await entries(conn, book, day, day, api.clock())


@router.get("/collections")
async def collections_page(request: Request, user: CityPage, day: Day = None, round_: Annotated[
        str | None, Query(alias="round", max_length=200)] = None, district: Filter = None,
        truck: Filter = None) -> Response:
    api = context_of(request)
    chosen = _day(request, day, _today(request))
    found = await _ledger(request, chosen)
    shown = select(found, round_ or None, district or None, truck or None)
    now = api.clock()
    figures = await collection_stats(api, user.scope, now - timedelta(days=30), now)
    return render(request, "collections.html", day=chosen.isoformat(), coverage=coverage(shown),
                  rows=[row(e) for e in shown] if user.may("operator") else [],
                  rounds=sorted({e.stop.round for e in found}), districts=sorted({e.stop.district for e in found}),
                  filters={"round": round_ or "", "district": district or "", "truck": truck or ""},
                  figures=figures, next_day=(chosen + timedelta(days=1)).isoformat())


@router.get("/collections.csv")
async def collections_csv(request: Request, user: CityOperatorPage, day: Day = None, round_: Annotated[
        str | None, Query(alias="round", max_length=200)] = None, district: Filter = None,
        truck: Filter = None) -> Response:
    chosen = _day(request, day, _today(request))
    shown = select(await _ledger(request, chosen), round_ or None, district or None, truck or None)
    return Response(to_csv(shown), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="ledger-{chosen.isoformat()}.csv"'})


@router.get("/collections/plan")
async def plan_page(request: Request, user: CityPage, day: Day = None) -> Response:
    api = context_of(request)
    chosen = _day(request, day, _today(request) + timedelta(days=1))
    _ = translations(request.state.language).gettext
    if api.planner is None:
        raise ConsoleError(503, _("Plans are made by a gateway process: none runs here."))
    problem = None
    made = None
    try:
        made = await api.planner(chosen, 80.0, user.scope.jurisdiction)
    except (PlanRefused, RoutingUnavailable) as exc:
        problem = str(exc)
    return render(request, "plan.html", day=chosen.isoformat(), plan=summary(made) if made else None,
                  problem=problem, tiles_url=api.settings.map_tiles_url)


@router.get("/collections/plan.json")
async def plan_json(request: Request, user: CityPage, day: Day = None) -> Response:
    api = context_of(request)
    chosen = _day(request, day, _today(request) + timedelta(days=1))
    if api.planner is None:
        return JSONResponse({"detail": "no gateway runs here"}, status_code=503)
    try:
        made = await api.planner(chosen, 80.0, user.scope.jurisdiction)
    except PlanRefused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    except RoutingUnavailable as exc:
        return JSONResponse({"detail": str(exc)}, status_code=502)
    return JSONResponse(geojson(made))
