"""The console under a city's load, in a real headless Chromium: 10,000 containers and 200 trucks moving at
1 Hz (a tenth of that with `quick`), a million incidents in the store, a year of hourly readings.

Figures: time to the first render of the map with every marker; how old a truck's position is when it is
drawn (publish → on screen, p50/p95; goal p95 ≤ 2 s); the incident queue's response time (goal p95 ≤ 200
ms); a device chart over a year (goal ≤ 300 ms). `wastegate serve` runs as its own process, as deployed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx
import psycopg

from gateway.console.auth import hash_password
from gateway.embedded.ports import free_port, stop_process, wait_for_port
from gateway.sources.mqtt import MqttPublisher
from gateway.store.users import upsert_user

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CENTRE = (41.3902, 2.1540)
USER, PASSWORD = "bench", "bench-password"


def _seed(url: str, containers: int, trucks: int, incidents: int, now: datetime) -> None:
    """Containers on a grid over the Eixample with one fill reading each, trucks, incidents, a year of one
    container's hourly readings: written by SQL, which is not what is measured."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO devices (device_id, profile, kind, name, lat, lon, attributes, first_seen, last_seen)
            SELECT 'C-' || n, 'container', 'container', 'Container ' || n, %(lat)s + (n / 100) * 0.0004,
                   %(lon)s + (n %% 100) * 0.0005, '{"bin_depth_mm": 1200}', %(now)s, %(now)s
            FROM generate_series(0, %(containers)s - 1) n""",
                     {"lat": CENTRE[0] - 0.02, "lon": CENTRE[1] - 0.025, "now": now, "containers": containers})
        conn.execute("""
            INSERT INTO telemetry (time, device_id, message_key, received_at, profile, fill_pct, battery_pct)
            SELECT %(now)s - interval '10 minutes', 'C-' || n, decode(md5('fill' || n), 'hex'), %(now)s, 'container',
                   (n * 37) %% 100, 90
            FROM generate_series(0, %(containers)s - 1) n""", {"now": now, "containers": containers})
        conn.execute("""
            INSERT INTO devices (device_id, profile, kind, name, first_seen, last_seen)
            SELECT 'T-' || n, 'truck', 'truck', 'Truck ' || n, %(now)s, %(now)s
            FROM generate_series(0, %(trucks)s - 1) n""",
                     {"now": now, "trucks": trucks})
        conn.execute("""
            INSERT INTO incidents (source, service_code, status, severity, title, lat, lon, first_seen_at,
                                   last_seen_at, created_at, updated_at, resolved_at)
            SELECT CASE WHEN n %% 3 = 0 THEN 'device_rule' ELSE 'citizen' END,
                   (ARRAY['container_full', 'container_damaged', 'container_fire', 'sensor_fault'])[n %% 4 + 1],
                   CASE WHEN n %% 50 = 0 THEN 'open' ELSE 'closed' END, 'minor', 'Incident ' || n,
                   %(lat)s + (n %% 1000) * 0.00004, %(lon)s + (n %% 997) * 0.00005,
                   %(now)s - (n || ' minutes')::interval, %(now)s - (n || ' minutes')::interval,
                   %(now)s - (n || ' minutes')::interval, %(now)s - (n || ' minutes')::interval,
                   CASE WHEN n %% 50 = 0 THEN NULL ELSE %(now)s - (n || ' minutes')::interval + interval '3 hours' END
            FROM generate_series(1, %(incidents)s) n""",
                     {"lat": CENTRE[0] - 0.02, "lon": CENTRE[1] - 0.025, "now": now, "incidents": incidents})
        conn.execute("""
            INSERT INTO telemetry (time, device_id, message_key, received_at, profile, fill_pct, temperature_c,
                                   battery_pct)
            SELECT t, 'C-0', decode(md5('year' || t::text), 'hex'), t, 'container', extract(hour FROM t) * 4,
                   15 + extract(month FROM t), 100 - extract(doy FROM t) / 5
            FROM generate_series(%(now)s - interval '365 days', %(now)s - interval '1 hour', interval '1 hour') t""",
                     {"now": now})
        conn.execute("ANALYZE")


def _serve(database_url: str, broker_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WASTEGATE_DATABASE_URL": database_url, "WASTEGATE_MQTT_URL": broker_url,
           "WASTEGATE_MQTT_CLIENT_ID": "wastegate-bench-console", "WASTEGATE_API_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, timeout_s=60)
    return process


def _signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/console/signin").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, "no sign-in form"
    answer = client.post("/console/signin", data={"name": USER, "password": PASSWORD, "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text[:200]
    return client


def _times_ms(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return _summary(times)


def _summary(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": round(values[0], 1) if values else 0.0, "p95": round(values[0], 1) if values else 0.0}
    cuts = quantiles(values, n=20, method="inclusive")
    return {"p50": round(cuts[9], 1), "p95": round(cuts[18], 1), "max": round(max(values), 1)}


class _Trucks(threading.Thread):
    """Every truck publishes its position once a second, stamped with the time it is published."""

    def __init__(self, broker_url: str, trucks: int) -> None:
        super().__init__(daemon=True)
        self.broker_url, self.trucks = broker_url, trucks
        self.stop = threading.Event()
        self.published = 0

    def run(self) -> None:
        with MqttPublisher(self.broker_url) as publisher:
            tick = 0
            while not self.stop.is_set():
                started = time.monotonic()
                for n in range(self.trucks):
                    now = datetime.now(UTC)
                    angle = (tick + n) % 360
                    payload = {"ts": now.isoformat(), "lat": CENTRE[0] + 0.01 * (n % 20) / 20 + 0.0001 * (angle % 60),
                               "lon": CENTRE[1] + 0.01 * (n // 20) / 10, "speed_kmh": 18.0, "heading_deg": angle}
                    publisher.publish(f"trucks/T-{n}/telemetry", json.dumps(payload))
                    self.published += 1
                tick += 1
                self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def console(database_url: str, broker_url: str, quick: bool = False) -> dict[str, Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return {"skipped": "chromium and chromium-driver are not installed"}
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    containers, trucks, incidents = (1_000, 20, 20_000) if quick else (10_000, 200, 1_000_000)
    now = datetime.now(UTC)
    seeding = time.perf_counter()
    _seed(database_url, containers, trucks, incidents, now)
    seeded_s = time.perf_counter() - seeding
    upsert_user(database_url, USER, hash_password(PASSWORD), "operator", "en")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(database_url, broker_url, port)
    moving = _Trucks(broker_url, trucks)
    profile_dir = Path(tempfile.mkdtemp(prefix="wastegate-bench-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--window-size=1280,900", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        client = _signed_in(base)
        for name, value in client.cookies.items():
            browser.get(f"{base}/console/signin")
            browser.add_cookie({"name": name, "value": value, "path": "/console"})
        moving.start()
        time.sleep(3)  # the trucks are on the map before the first render is timed
        started = time.perf_counter()
        browser.get(f"{base}/console/")
        deadline = time.monotonic() + 120
        script = ("const m = window.wastegateMap; return m && document.getElementById('map').dataset.loaded "
                  "=== 'true' ? [m.containers.size, m.trucks.size] : null;")
        while (drawn := browser.execute_script(script)) is None or drawn[0] < containers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the map did not draw every marker: {drawn}")
            time.sleep(0.05)
        first_render_ms = (time.perf_counter() - started) * 1000
        browser.execute_script("window.wastegateMap.lag.length = 0;")
        time.sleep(10 if quick else 30)
        lag = [float(v) for v in browser.execute_script("return window.wastegateMap.lag;")]
        queue = _times_ms(client, "/console/incidents", 20 if quick else 50)
        queue_filtered = _times_ms(client, "/console/incidents?status=&service_code=container_fire&sort=oldest", 10)
        chart = _times_ms(client, "/console/devices/C-0?range=365d", 10 if quick else 20)
        client.close()
    finally:
        moving.stop.set()
        browser.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)
        stop_process(server)
    staleness = _summary(lag)
    return {
        "containers": containers, "trucks": trucks, "incidents": incidents, "seeded_s": round(seeded_s, 1),
        "first_render_ms": round(first_render_ms, 1), "truck_positions_drawn": len(lag),
        "staleness_ms": staleness, "queue_ms": queue, "queue_filtered_ms": queue_filtered,
        "year_chart_ms": chart,
        "goals": {"staleness p95 <= 2000 ms": staleness["p95"] <= 2000, "queue p95 <= 200 ms": queue["p95"] <= 200,
                  "year chart p95 <= 300 ms": chart["p95"] <= 300},
        "published": moving.published, "at": now.isoformat(),
    }


def _standalone(quick: bool) -> dict[str, Any]:
    """`python -m bench.console [--quick]`: on a throwaway Mosquitto and PostgreSQL."""
    from gateway.embedded.mosquitto import Mosquitto
    from gateway.embedded.postgres import Postgres
    from gateway.settings import Settings
    from gateway.store.migrate import apply_storage_policies, migrate

    with tempfile.TemporaryDirectory(prefix="wastegate-bench-console-") as tmp, \
            Postgres(Path(tmp) / "pg") as postgres, Mosquitto(Path(tmp) / "mosquitto") as broker:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_console")
        url = postgres.url("bench_console")
        migrate(url)
        apply_storage_policies(url, Settings(_env_file=None))
        return console(url, broker.url, quick)


if __name__ == "__main__":
    print(json.dumps(_standalone("--quick" in sys.argv), indent=2))
