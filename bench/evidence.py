"""A citizen's missed-collection report answered by the ledger's evidence: how long the Open311 POST takes
when the answer is looked up (the stop's day folded from the committed telemetry that instant) against a
POST of a report that needs no lookup, on `wastegate serve` with a week of eight trucks' fixes (the month
simulator: 300 households, a fix every 5 s) in PostgreSQL.

`python -m bench.evidence` runs it on its own (a throwaway PostgreSQL); `wastegate bench` includes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median, quantiles
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg

from gateway.embedded.ports import free_port, stop_process, wait_for_port
from gateway.store.devices import upsert_devices
from simulators.month import DAYS, Month

REPO = Path(__file__).resolve().parents[1]
MADRID = ZoneInfo("Europe/Madrid")
KEY = "bench-evidence"


def _seed(url: str, month: Month) -> int:
    upsert_devices(url, [d for d in month.devices() if d.kind == "truck"])
    rows = [r for r in month.history() if r.profile == "truck"]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY telemetry (time, device_id, message_key, received_at, profile, lat, lon, speed_kmh, "
                      "rfid, event, weight_kg) FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r.time, r.device_id, r.message_key, r.received_at, "truck", r.lat, r.lon,
                                r.speed_kmh, r.rfid, r.event, r.weight_kg))
        conn.commit()
        conn.execute("ANALYZE telemetry")
    return len(rows)


def _times(client: httpx.Client, forms: list[dict[str, str]]) -> list[float]:
    taken = []
    for form in forms:
        started = time.perf_counter()
        answer = client.post("/open311/v2/requests.json", data={"api_key": KEY, **form})
        taken.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:200]
    return taken


def _summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(median(times), 1), "p95_ms": round(quantiles(times, n=20)[-1], 1),
            "max_ms": round(max(times), 1)}


def run(database_url: str, reports: int = 100, days: int = 7, trucks: int = 8, households: int = 300) -> dict[str, Any]:
    today = datetime.now(MADRID).replace(hour=0, minute=0, second=0, microsecond=0)
    month = Month((today - timedelta(days=days - 1)).astimezone(UTC), days=days, containers=0, trucks=trucks,
                  households=households)
    fixes = _seed(database_url, month)
    stops = json.loads(month.households_yaml())["households"]
    due = [h for h in stops if DAYS[today.weekday()] in h["days"]] or stops
    with tempfile.TemporaryDirectory(prefix="wastegate-bench-evidence-") as scratch:
        rules = Path(scratch) / "rules"
        shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
        (rules / "data" / "households.yaml").write_text(json.dumps({"households": stops}), encoding="utf-8")
        port = free_port()
        env = {**os.environ, "WASTEGATE_DATABASE_URL": database_url, "WASTEGATE_API_PORT": str(port),
               "WASTEGATE_RULES_DIR": str(rules), "WASTEGATE_OPEN311_API_KEYS": KEY,
               "WASTEGATE_GATEWAY_ENABLED": "false"}
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=REPO, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, timeout_s=60)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                plain = [{"service_code": "container_full", "lat": str(h["lat"]), "long": str(h["lon"]),
                          "description": "full"} for h in (due * 5)[:reports]]
                evidence = [{"service_code": "missed_collection", "address_string": h["address"],
                             "description": "not collected"} for h in (due * 5)[:reports]]
                _times(client, plain[:10] + evidence[:10])  # warm up both paths
                with psycopg.connect(database_url) as conn:
                    warm = conn.execute("SELECT coalesce(max(id), 0) FROM incidents").fetchone()
                plain_ms, evidence_ms = _times(client, plain), _times(client, evidence)
        finally:
            stop_process(process)
    measured = {"after": warm[0] if warm else 0}  # the reports of the measured run, not the warm-up's
    with psycopg.connect(database_url) as conn:
        answered = conn.execute("SELECT count(DISTINCT incident_id) FROM incident_events "
                                "WHERE actor = 'system:ledger' AND public AND incident_id > %(after)s",
                                measured).fetchone()
        by_status: dict[str, int] = dict(conn.execute(
            "SELECT data->>'status', count(*) FROM incident_events WHERE actor = 'system:ledger' AND NOT public "
            "AND incident_id > %(after)s GROUP BY 1", measured).fetchall())
        closed = conn.execute("SELECT count(*) FROM incidents WHERE service_code = 'missed_collection' "
                              "AND status = 'closed' AND id > %(after)s", measured).fetchone()
    return {"truck_fixes": fixes, "households": len(stops), "reports": reports,
            "answered": answered[0] if answered else 0, "closed_as_collected_or_not_out": closed[0] if closed else 0,
            "open_by_status": by_status,
            "plain_report": _summary(plain_ms), "answered_report": _summary(evidence_ms),
            "answered_to_plain_p50": round(median(evidence_ms) / median(plain_ms), 2)}


def main() -> None:
    from gateway.embedded.postgres import Postgres
    from gateway.store.migrate import migrate

    with tempfile.TemporaryDirectory(prefix="wastegate-bench-evidence-db-") as directory, \
            Postgres(Path(directory) / "pg") as postgres:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_evidence")
        url = postgres.url("bench_evidence")
        migrate(url)
        figures = run(url)
        (REPO / "bench" / "results" / "evidence.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
