"""A plan on disk: `plan.geojson` (every route as a line, every stop as a point), `<truck>.gpx` (a route
for the cab's navigation) and `<truck>.html` (the driver's printable list), and `plan.json` (figures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from jinja2 import Environment, select_autoescape

from gateway.plan.routes import Plan, Route

_PRINTABLE = Environment(autoescape=select_autoescape(default=True, default_for_string=True)).from_string("""\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ route.truck.name }} — {{ day }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #999;padding:.3em .5em;text-align:left}@media print{body{margin:0}}</style></head>
<body><h1>{{ route.truck.name }} — {{ day }}</h1>
<p>From {{ route.start.name }} to {{ route.end.name }}: {{ route.stops|length }} containers,
{{ route.litres }} l of {{ route.truck.capacity_l }} l, {{ "%.1f"|format(route.distance_m / 1000) }} km.</p>
<table><thead><tr><th>#</th><th>Container</th><th>Why</th><th>Expected fill</th><th>Litres</th><th>Done</th></tr>
</thead><tbody>{% for stop in route.stops %}<tr><td>{{ loop.index }}</td><td>{{ stop.name }} ({{ stop.id }})</td>
<td>{{ stop.why }}</td><td>{{ "%.0f %%"|format(stop.fill_pct) if stop.fill_pct is not none else "" }}</td>
<td>{{ stop.litres }}</td><td>☐</td></tr>{% endfor %}</tbody></table></body></html>
""")


def geojson(plan: Plan) -> dict[str, Any]:
    features: list[dict[str, Any]] = []
    for route in plan.routes:
        line = [[route.start.lon, route.start.lat], *([s.lon, s.lat] for s in route.stops),
                [route.end.lon, route.end.lat]]
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": line},
                         "properties": {"truck": route.truck.id, "stops": len(route.stops), "litres": route.litres,
                                        "capacity_l": route.truck.capacity_l, "distance_m": round(route.distance_m)}})
        for order, stop in enumerate(route.stops, 1):
            features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [stop.lon, stop.lat]},
                             "properties": {"truck": route.truck.id, "order": order, "container": stop.id,
                                            "name": stop.name, "why": stop.why, "litres": stop.litres}})
    for stop in plan.not_served:
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [stop.lon, stop.lat]},
                         "properties": {"container": stop.id, "name": stop.name, "not_served": True}})
    return {"type": "FeatureCollection", "features": features}


def gpx(route: Route, day: str) -> str:
    points = [(route.start.name, route.start.lat, route.start.lon),
              *((f"{i}. {s.name}", s.lat, s.lon) for i, s in enumerate(route.stops, 1)),
              (route.end.name, route.end.lat, route.end.lon)]
    body = "".join(f'<rtept lat="{lat:.6f}" lon="{lon:.6f}"><name>{escape(name)}</name></rtept>'
                   for name, lat, lon in points)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="Wastegate" '
            'xmlns="http://www.topografix.com/GPX/1/1">'
            f"<rte><name>{escape(route.truck.name)} {day}</name>{body}</rte></gpx>\n")


def summary(plan: Plan) -> dict[str, Any]:
    return {"day": plan.day, "distance_m": round(plan.distance_m),
            "routes": [{"truck": r.truck.id, "stops": [s.id for s in r.stops], "litres": r.litres, "kg": r.kg,
                        "capacity_l": r.truck.capacity_l, "capacity_kg": r.truck.capacity_kg,
                        "distance_m": round(r.distance_m)} for r in plan.routes],
            "not_served": [s.id for s in plan.not_served]}


def write(plan: Plan, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "plan.geojson", directory / "plan.json"]
    written[0].write_text(json.dumps(geojson(plan), indent=1), encoding="utf-8")
    written[1].write_text(json.dumps(summary(plan), indent=2), encoding="utf-8")
    for route in plan.routes:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in route.truck.id)
        (directory / f"{safe}.gpx").write_text(gpx(route, plan.day), encoding="utf-8")
        (directory / f"{safe}.html").write_text(_PRINTABLE.render(route=route, day=plan.day), encoding="utf-8")
        written += [directory / f"{safe}.gpx", directory / f"{safe}.html"]
    return written
