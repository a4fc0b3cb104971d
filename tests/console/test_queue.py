"""The incident queue on a real store: filters (status, category, source, district, assignee, age,
text), sort, counts per status, paging; and a report registered for a caller."""

from __future__ import annotations

import json
import re
from contextlib import closing
from datetime import timedelta

from shapely.geometry import shape

from tests.console.conftest import Console
from tests.console.test_accounts import csrf_of, signed_in
from tests.support import REPO, scalar, sql


def ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-incident="(\d+)"', html)]


def test_filters_sort_counts_and_paging(console: Console) -> None:
    url = console.settings.database_url
    now = console.gateway.clock()
    features = json.loads((REPO / "rules/zones/districtes.geojson").read_text())["features"]
    first, second = (shape(f["geometry"]).representative_point() for f in features[:2])
    rows = [  # source, service, status, severity, assigned_to, age in days, point, title
        ("citizen", "container_full", "open", "minor", None, 0, first, "Full at Mallorca"),
        ("device_rule", "container_fire", "assigned", "critical", "fire-brigade", 2, second, "Fire at Aragó"),
        ("staff", "container_damaged", "resolved", "major", None, 10, first, "Broken lid"),
    ]
    for source, code, status, severity, assignee, days, point, title in rows:
        at = now - timedelta(days=days)
        sql(url, "INSERT INTO incidents (source, service_code, status, severity, assigned_to, title, lat, lon, "
                 "first_seen_at, last_seen_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (source, code, status, severity, assignee, title, point.y, point.x, at, at, at))
    for n in range(60):
        sql(url, "INSERT INTO incidents (source, service_code, title, first_seen_at, last_seen_at, created_at) "
                 "VALUES ('citizen', 'sensor_fault', %s, %s, %s, %s)", (f"filler {n}", now, now, now))
    all_ids = [int(r[0]) for r in sql(url, "SELECT id FROM incidents ORDER BY id")]
    full, fire, broken = all_ids[:3]
    with closing(signed_in(console, "vera")) as client:

        def get(**params: str | int) -> str:
            return client.get("/console/incidents", params=params).text

        assert fire in ids(get(service_code="container_fire")) and len(ids(get(service_code="container_fire"))) == 1
        assert ids(get(status="resolved")) == [broken]
        assert broken not in ids(get())  # by default: what is not resolved
        assert ids(get(source="device_rule")) == [fire]
        assert ids(get(assignee="brigade")) == [fire]
        assert set(ids(get(status="", age="7d", text="at"))) == {full, fire}
        district = features[0]["properties"]["NOM"]
        assert set(ids(get(status="", district=district))) == {full, broken}
        assert ids(get(status="", sort="severity"))[:2] == [fire, broken]  # then the minor ones, newest first
        assert ids(get(status="", sort="oldest"))[0] == full
        page_one, page_two = get(status=""), get(status="", page=2)
        assert len(ids(page_one)) == 50 and len(ids(page_two)) == 13 and not set(ids(page_one)) & set(ids(page_two))
        assert re.search(r'data-status="open">[^<]*<b>61</b>', page_one)
        assert client.get("/console/incidents", params={"district": "Atlantis"}).status_code == 400


def test_a_report_taken_by_phone(console: Console) -> None:
    with closing(signed_in(console, "olga")) as client:
        form = client.get("/console/incidents/new")
        made = client.post("/console/incidents/new", data={
            "csrf_token": csrf_of(form), "service_code": "container_full", "description": "Overflowing",
            "address": "Carrer de Mallorca 401", "caller_name": "Joan", "caller_phone": "600000000",
            "channel": "phone"})
        assert made.status_code == 303
        page = client.get(made.headers["location"])
        assert "Joan" in page.text and "600000000" in page.text  # the reporter, for an operator
    url = console.settings.database_url
    assert scalar(url, "SELECT reporter->>'taken_by' FROM incidents") == "olga"
    with closing(signed_in(console, "vera")) as viewer:
        assert "600000000" not in viewer.get(made.headers["location"]).text  # not for a viewer


def test_the_counts_per_status_follow_every_change(console: Console) -> None:
    url = console.settings.database_url
    now = console.gateway.clock()
    for n in range(5):
        sql(url, "INSERT INTO incidents (source, service_code, title, first_seen_at, last_seen_at) "
                 "VALUES ('citizen', 'container_full', %s, %s, %s)", (f"r{n}", now, now))
    sql(url, "UPDATE incidents SET status = 'resolved' WHERE title IN ('r0', 'r1')")
    sql(url, "UPDATE incidents SET status = 'closed' WHERE title = 'r1'")
    sql(url, "UPDATE incidents SET severity = 'major' WHERE title = 'r2'")  # not a status change
    sql(url, "DELETE FROM incidents WHERE title = 'r3'")
    kept = dict(sql(url, "SELECT status, n FROM incident_status_counts WHERE n > 0"))
    counted = dict(sql(url, "SELECT status, count(*) FROM incidents GROUP BY status"))
    assert kept == counted == {"open": 2, "resolved": 1, "closed": 1}
