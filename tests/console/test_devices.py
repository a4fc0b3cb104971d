"""The device pages over HTTP on a real store: statuses in the list, a year of hourly readings drawn as a
chart of at most a few hundred points, and a truck's day with its bin lifts and stops."""

from __future__ import annotations

import re
from contextlib import closing
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from gateway.devices import Device
from gateway.store.devices import upsert_devices
from tests.console.conftest import Console
from tests.console.test_accounts import signed_in
from tests.support import sql


def test_a_year_of_hourly_readings_is_one_chart_of_a_few_hundred_points(console: Console) -> None:
    url = console.settings.database_url
    now = console.gateway.clock()
    upsert_devices(url, [Device("C-1", "container", "container", "Mallorca 1", 41.39, 2.16,
                                MappingProxyType({"bin_depth_mm": 1200})),
                         Device("C-2", "container", "container", "Mallorca 2", 41.391, 2.161)])
    sql(url, """INSERT INTO telemetry (time, device_id, message_key, received_at, profile, fill_pct, battery_pct)
                SELECT t, 'C-1', decode(md5(t::text), 'hex'), t, 'container', (extract(hour FROM t) * 4)::int,
                       50 - extract(day FROM t) / 2
                FROM generate_series(%s::timestamptz - interval '365 days', %s::timestamptz, interval '1 hour') t""",
        (now, now))
    with closing(signed_in(console, "olga")) as client:
        listing = client.get("/console/devices")
        assert listing.status_code == 200
        assert re.search(r'data-device="C-1" data-status="reporting"', listing.text)
        assert re.search(r'data-device="C-2" data-status="never_seen"', listing.text)
        found = client.get("/console/devices?q=C-2")
        assert 'data-device="C-2"' in found.text and 'data-device="C-1"' not in found.text
        page = client.get("/console/devices/C-1?range=365d")
        assert page.status_code == 200
        points = [int(n) for n in re.findall(r'class="chart" [^>]*data-points="(\d+)"', page.text)]
        assert len(points) >= 2 and all(300 <= n <= 401 for n in points[:1]), points
        assert client.get("/console/devices/nope").status_code == 404
        assert client.get("/console/devices/C-1?range=forever").status_code == 400


def test_a_trucks_day_has_its_track_lifts_and_stops(console: Console) -> None:
    url = console.settings.database_url
    day = datetime(2026, 11, 23, tzinfo=UTC)
    rows = []
    for second in range(0, 1800, 10):
        stopped = 600 <= second < 900  # five minutes at a stand
        rows.append((day + timedelta(hours=8, seconds=second), "T1", f"k{second}".encode(), "truck",
                     41.39 + (0 if stopped else second) * 1e-5, 2.16, 0.0 if stopped else 20.0,
                     "bin_lift" if second % 300 == 0 else None, "E200" if second % 300 == 0 else None))
    with closing(signed_in(console, "olga")) as client:
        upsert_devices(url, [Device("T1", "truck", "truck", "Truck 1")])
        for row in rows:
            sql(url, "INSERT INTO telemetry (time, device_id, message_key, received_at, profile, lat, lon, speed_kmh,"
                     " event, rfid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (row[0], row[1], row[2], row[0], *row[3:]))
        route = client.get("/console/devices/T1/route.json?day=2026-11-23").json()
        assert 40 <= len(route["track"]) <= 45  # half an hour in buckets of 43 s (a day in 2,000)
        assert [lift[3] for lift in route["lifts"]] == ["E200"] * 6
        assert len(route["stops"]) == 1 and route["stops"][0][0].startswith("2026-11-23T08:10")
        page = client.get("/console/devices/T1?day=2026-11-23")
        assert 'id="route-map"' in page.text
        assert client.get("/console/devices/T1/route.json?day=someday").status_code == 400
    with closing(signed_in(console, "vera")) as viewer:
        lifts = viewer.get("/console/devices/T1/route.json?day=2026-11-23").json()["lifts"]
        assert lifts and all(lift[3] is None for lift in lifts)  # households' tags: operators only
