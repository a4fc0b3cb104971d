"""The statistics page and its CSVs on a real store: counts per day, category, source and district, the
median and 90th percentile time to resolve on one clock, fill levels, collections done and missed."""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing
from datetime import timedelta

from shapely.geometry import shape

from gateway.devices import Device
from gateway.store.devices import upsert_devices
from tests.console.conftest import Console
from tests.console.test_accounts import signed_in
from tests.support import REPO, sql


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_statistics_and_their_csvs(console: Console) -> None:
    url = console.settings.database_url
    now = console.gateway.clock().replace(microsecond=0)
    district = json.loads((REPO / "rules/zones/districtes.geojson").read_text())["features"][0]
    inside = shape(district["geometry"]).representative_point()
    name = district["properties"]["NOM"]  # the name the zone loader gives it
    # device incidents resolved in 1 h and 3 h (device time at both ends), a report resolved in 2 h, one open
    for hours, source, code in ((1, "device_rule", "container_full"), (3, "device_rule", "container_full"),
                                (2, "citizen", "container_damaged")):
        opened = now - timedelta(days=1, hours=hours)
        sql(url, "INSERT INTO incidents (source, service_code, title, lat, lon, first_seen_at, last_seen_at, "
                 "created_at, resolved_at, status) VALUES (%s, %s, 't', %s, %s, %s, %s, %s, %s, 'resolved')",
            (source, code, inside.y, inside.x, opened, opened,
             opened if source == "citizen" else now, opened + timedelta(hours=hours)))
    sql(url, "INSERT INTO incidents (source, service_code, title, first_seen_at, last_seen_at, created_at) "
             "VALUES ('citizen', 'missed_collection', 't', %s, %s, %s)", (now, now, now))
    upsert_devices(url, [Device("C-1", "container", "container"), Device("C-2", "container", "container"),
                         Device("T1", "truck", "truck")])  # a truck is registered when first heard of
    sql(url, "INSERT INTO telemetry (time, device_id, message_key, received_at, profile, fill_pct, event) VALUES "
             "(%s, 'C-1', 'a', %s, 'container', 35, NULL), (%s, 'C-2', 'b', %s, 'container', 95, NULL), "
             "(%s, 'T1', 'c', %s, 'truck', NULL, 'bin_lift')", (now, now, now, now, now, now))
    with closing(signed_in(console, "vera")) as client:
        page = client.get("/console/stats?period=7d")
        assert page.status_code == 200 and 'id="stats-by_district"' in page.text

        def get(name: str) -> list[list[str]]:
            return rows(client.get(f"/console/stats/{name}.csv?period=7d").text)

        def table(name: str) -> dict[str, str]:
            return {row[0]: row[1] for row in get(name)[1:]}

        assert table("by_category") == {"container_full": "2", "container_damaged": "1",
                                                "missed_collection": "1"}
        assert table("by_source") == {"device_rule": "2", "citizen": "2"}
        assert table("by_district") == {str(name): "3", "–": "1"}
        assert table("time_to_resolve") == {"median": "2.0", "p90": "2.8", "resolved": "3"}
        assert table("fill_levels") == {"30": "1", "90": "1"}
        per_day = get("per_day")
        assert per_day[0] == ["day", "opened", "resolved"] and len(per_day) in (8, 9)
        assert sum(int(r[1]) for r in per_day[1:]) == 4 and sum(int(r[2]) for r in per_day[1:]) == 3
        collections = get("collections")
        assert sum(int(r[1]) for r in collections[1:]) == 1 and sum(int(r[2]) for r in collections[1:]) == 1
        assert client.get("/console/stats/secrets.csv").status_code == 400
        assert client.get("/console/stats?period=forever").status_code == 400
