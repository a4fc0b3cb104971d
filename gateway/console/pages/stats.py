"""Statistics: incidents opened and resolved per day, by category, by source and by district; median and
90th percentile time to resolve; the containers' fill levels; collections done and missed per day. Each
chart has a CSV of the numbers behind it (`/console/stats/<name>.csv`, same period)."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path as PathType
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from markupsafe import Markup
from psycopg.rows import dict_row
from shapely import STRtree
from shapely.geometry import Point

from gateway.api.context import ApiContext
from gateway.console.charts import Series, bar_chart, line_chart
from gateway.console.districts import districts
from gateway.console.i18n import translations
from gateway.console.session import ConsoleError, Page, context_of
from gateway.console.templating import render
from gateway.organisation.scope import Scope
from gateway.store.queries import query

router = APIRouter()

PERIODS = {"7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90), "365d": timedelta(days=365)}
Period = Annotated[Literal["7d", "30d", "90d", "365d"], Query()]
Table = list[tuple[Any, ...]]


# About the city's devices as a whole: not shown to a partner's members.
CITY_TABLES = ("fill_levels", "collections")


async def _tables(api: ApiContext, period: str, scope: Scope) -> dict[str, tuple[tuple[str, ...], Table]]:
    """Every table behind the page: name → (header, rows), of the incidents within `scope`."""
    end = api.clock()
    start = end - PERIODS[period]
    params = {"start": start, "end": end, "now": end, "organisations": scope.organisations,
              "jurisdiction": scope.jurisdiction}
    fill: list[dict[str, Any]] = []
    collections: list[dict[str, Any]] = []
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("console_stats_per_day"), params)
        per_day = await cur.fetchall()
        await cur.execute(query("console_stats_incidents"), params)
        incidents = await cur.fetchall()
        if scope.is_city:
            await cur.execute(query("console_stats_fill"), params)
            fill = await cur.fetchall()
            await cur.execute(query("console_stats_collections"), params)
            collections = await cur.fetchall()
    city = api.city(scope.jurisdiction)
    names = {org.id: org.slug for org in city.organisations}
    by_organisation: Counter[str] = Counter()
    overdue: Counter[str] = Counter()
    for incident in incidents:
        slug = names.get(incident["organisation_id"], "") if incident["organisation_id"] else ""
        by_organisation[slug] += 1
        overdue[slug] += bool(incident["overdue"])
    districts = _districts(city.files.rules_dir, incidents)
    resolve = [float(i["resolve_s"]) for i in incidents if i["resolve_s"] is not None]
    times = [("median", _hours(statistics.median(resolve)) if resolve else None),
             ("p90", _hours(_percentile(resolve, 0.9)) if resolve else None), ("resolved", len(resolve))]
    return {
        "per_day": (("day", "opened", "resolved"),
                    [(r["day"].isoformat(), r["opened"], r["resolved"]) for r in per_day]),
        "by_category": (("service_code", "incidents"), Counter(i["service_code"] for i in incidents).most_common()),
        "by_source": (("source", "incidents"), Counter(i["source"] for i in incidents).most_common()),
        "by_district": (("district", "incidents"), districts.most_common()),
        "by_organisation": (("organisation", "incidents", "overdue"),
                            [(slug, n, overdue[slug]) for slug, n in by_organisation.most_common()]),
        "time_to_resolve": (("measure", "hours"), times),
        "fill_levels": (("fill_pct_from", "containers"), [((r["bucket"] - 1) * 10, r["containers"]) for r in fill]),
        "collections": (("day", "lifted", "missed"),
                        [(r["day"].isoformat(), r["lifted"], r["missed"]) for r in collections]),
    }


@router.get("/stats")
async def stats_page(request: Request, user: Page, period: Period = "30d") -> Response:
    api = context_of(request)
    tables = await _tables(api, period, user.scope)
    charts: dict[str, Markup] = {}
    per_day = tables["per_day"][1]
    days = [datetime.fromisoformat(day) for day, _, _ in per_day]
    charts["per_day"] = line_chart(Series(list(zip(days, [o for _, o, _ in per_day], strict=True)), "opened"))
    charts["resolved_per_day"] = line_chart(Series(list(zip(days, [r for _, _, r in per_day], strict=True)),
                                                   "resolved"))
    for name in ("by_category", "by_source", "by_district"):
        charts[name] = bar_chart([(str(k), float(v)) for k, v in tables[name][1]], name)
    charts["by_organisation"] = bar_chart([(k or "–", float(v)) for k, v, _ in tables["by_organisation"][1]],
                                          "by_organisation")
    charts["fill_levels"] = bar_chart([(f"{k}–{k + 10} %", float(v)) for k, v in tables["fill_levels"][1]],
                                      "fill_levels")
    collections = tables["collections"][1]
    charts["collections"] = bar_chart([(f"{day} ✓", float(lifted)) for day, lifted, _ in collections][-14:]
                                      + [(f"{day} ✗", float(missed)) for day, _, missed in collections][-14:],
                                      "collections")
    return render(request, "stats.html", charts=charts, tables=tables, period=period, periods=list(PERIODS),
                  city=user.scope.is_city)


@router.get("/stats/{name}.csv")
async def stats_csv(request: Request, user: Page,
                    name: Annotated[Literal["per_day", "by_category", "by_source", "by_district", "by_organisation",
                                            "time_to_resolve", "fill_levels", "collections"], Path()],
                    period: Period = "30d") -> Response:
    if name in CITY_TABLES and not user.scope.is_city:
        _ = translations(request.state.language).gettext
        raise ConsoleError(404, _("There is no such page."))
    header, rows = (await _tables(context_of(request), period, user.scope))[name]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="wastegate-{name}-{period}.csv"'})


def _districts(rules_dir: PathType, incidents: list[dict[str, Any]]) -> Counter[str]:
    """Incidents per district, by position (those without one, or outside every district: "–")."""
    counts: Counter[str] = Counter()
    zones = districts(rules_dir)
    tree = STRtree([zone.geometry for zone in zones]) if zones else None
    for incident in incidents:
        if tree is None or incident["lat"] is None or incident["lon"] is None:
            counts["–"] += 1
            continue
        hits = tree.query(Point(incident["lon"], incident["lat"]), predicate="within")
        counts[zones[int(hits[0])].name if len(hits) else "–"] += 1
    return counts


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 2)
