"""The collection ledger on real Mosquitto and PostgreSQL with the month simulator's city: kept live by the
gateway (beside its sweeps, from what is committed, while the trucks' readings arrive in the order they
were uploaded, buffered ones late) it holds exactly what a rebuild from history gives; and it tells lifted,
not presented, missed and extra apart."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.devices import Device
from gateway.events import Batch, Reading
from gateway.ledger import keeping
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from simulators.month import MADRID, Month
from tests.support import REPO, publish, running_gateway, scalar, sql, wait_until

START = datetime(2026, 3, 2, tzinfo=MADRID).astimezone(UTC)  # a Monday
FAR = {"id": "MH-FAR", "tag": "E2004100FFFFFFFF", "address": "Passeig de l'Exposició 1", "lat": 41.3700,
       "lon": 2.1600, "service_area": "Eixample", "days": ["mon", "tue", "wed"], "window": "06:00-12:00"}


def truck_message(reading: Reading) -> tuple[str, bytes]:
    payload: dict[str, Any] = {"ts": reading.time.isoformat(), "lat": reading.lat, "lon": reading.lon,
                               "speed_kmh": reading.speed_kmh, "ignition": bool(reading.extra.get("ignition", True))}
    if reading.event:
        payload.update(event=reading.event, rfid=reading.rfid, weight_kg=reading.weight_kg)
    return f"trucks/{reading.device_id}/telemetry", json.dumps(payload).encode()


def ledger_rows(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT stop_id, day, scheduled, lift_at, lift_truck, lift_lat, lift_lon, lift_weight_kg, "
                    "passed_at, passed_truck, not_out_at, not_out_truck FROM collection_ledger ORDER BY day, stop_id")


def rules_with(directory: Path, households: list[dict[str, Any]]) -> Path:
    shutil.copytree(REPO / "rules", directory, ignore=shutil.ignore_patterns("tests"))
    (directory / "data" / "households.yaml").write_text(json.dumps({"households": households}), encoding="utf-8")
    return directory


@pytest.mark.timeout(300)
def test_the_live_ledger_equals_the_one_rebuilt_from_history(settings: Settings, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keeping, "PAGE", 500)  # a round reads many pages, resumed row by row
    month = Month(START, days=3, containers=0, trucks=3, households=45, seed=5)
    households = [*json.loads(month.households_yaml())["households"], FAR]
    received = [r for r in month.as_received() if r.profile == "truck"]
    # A lift off schedule: the first household (mon/thu) lifted on Tuesday morning.
    first = households[0]
    off = datetime(2026, 3, 3, 9, 30, tzinfo=MADRID).astimezone(UTC)
    received.append(Reading("MT00", off, off, b"extra-lift", "truck", first["lat"], first["lon"], 0.0,
                            event="bin_lift", rfid=first["tag"], weight_kg=7.5))
    settings = settings.model_copy(update={"rules_dir": rules_with(tmp_path / "rules", households),
                                           "ledger_s": 0.3, "ledger_late_s": 400 * 86400.0,
                                           "max_past_s": 400 * 86400})
    devices = month.devices()
    upsert_devices(settings.database_url, devices)
    messages = [truck_message(r) for r in received]
    with running_gateway(settings):
        for at in range(0, len(messages), 5000):  # the uploads come over time, the ledger keeps up meanwhile
            publish(settings.mqtt_url, messages[at:at + 5000])
        def stored() -> int:
            return int(scalar(settings.database_url, "SELECT count(*) FROM telemetry"))

        wait_until(lambda: stored() == len(received), timeout_s=180)
        newest = scalar(settings.database_url, "SELECT max(received_at) FROM telemetry")
        wait_until(lambda: (scalar(settings.database_url, "SELECT read_until FROM ledger_progress") or newest)
                   >= newest and scalar(settings.database_url, "SELECT read_until FROM ledger_progress"), timeout_s=30)
    live = ledger_rows(settings.database_url)
    live_days = sql(settings.database_url, "SELECT day FROM ledger_days ORDER BY day")

    csv_path = tmp_path / "ledger.csv"
    env = {"WASTEGATE_DATABASE_URL": settings.database_url, "WASTEGATE_RULES_DIR": str(settings.rules_dir),
           "PATH": "/usr/bin:/bin", "COLUMNS": "160"}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "ledger", "--date", "2026-03-02", "--until",
                           "2026-03-04", "--rebuild", "--csv", str(csv_path)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rebuilt = ledger_rows(settings.database_url)
    assert len(live) > 40
    assert live == rebuilt
    assert live_days == sql(settings.database_url, "SELECT day FROM ledger_days ORDER BY day") == [
        (date(2026, 3, 2),), (date(2026, 3, 3),), (date(2026, 3, 4),)]

    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    by_status: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    lifts = {(r.rfid, r.time.astimezone(MADRID).date()) for r in received if r.event == "bin_lift"}
    tags = {h["id"]: h["tag"] for h in households}
    for row in by_status["lifted"]:
        assert (tags[row["stop_id"]], date.fromisoformat(row["day"])) in lifts
        assert row["truck"].startswith("MT") and float(row["weight_kg"]) > 0
    skipped = [t for t in month.truth if t.rule_id == "door-to-door" and t.subject.startswith("household:")]
    # The simulator's skipped households: the truck drove to the door and lifted nothing.
    not_presented = {(r["stop_id"], r["day"]) for r in by_status.get("not_presented", [])}
    for truth in skipped:
        day = truth.start.astimezone(MADRID).date().isoformat()
        assert (truth.subject.removeprefix("household:"), day) in not_presented
    assert {(r["stop_id"], r["day"]) for r in by_status["missed"]} == {
        ("MH-FAR", "2026-03-02"), ("MH-FAR", "2026-03-03"), ("MH-FAR", "2026-03-04")}
    assert [(r["stop_id"], r["day"]) for r in by_status["extra"]] == [(first["id"], "2026-03-03")]
    due = sum(1 for h in households for d in ("mon", "tue", "wed") if d in h["days"])
    assert len(rows) == due + 1
    assert "Eixample" in done.stdout and "served" in done.stdout


@pytest.mark.timeout(120)
def test_rows_committed_long_after_they_were_received_are_read_again(settings: Settings, tmp_path: Path) -> None:
    """A dead-letter replay (or a batch retried while the database was away) stores rows whose receiving
    time is older than the live ledger's last round: the ledger reads back to them."""
    now = datetime.now(UTC).replace(microsecond=0)
    lifted_at = now - timedelta(hours=1)
    if lifted_at.astimezone(MADRID).strftime("%H:%M") >= "23:58":
        lifted_at -= timedelta(minutes=5)  # inside the all-day window below
    every_day = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "window": "00:00-23:59",
                 "service_area": "Eixample"}
    households = [{"id": "H-NOW", "tag": "TAG-NOW", "address": "Carrer A 1", "lat": 41.39, "lon": 2.16, **every_day},
                  {"id": "H-LATE", "tag": "TAG-LATE", "address": "Carrer B 1", "lat": 41.40, "lon": 2.17, **every_day}]
    settings = settings.model_copy(update={"rules_dir": rules_with(tmp_path / "rules", households), "ledger_s": 0.3})
    upsert_devices(settings.database_url, [Device("MT00", "truck", "truck")])
    with running_gateway(settings):
        publish(settings.mqtt_url, [truck_message(Reading("MT00", now - timedelta(minutes=2), now, b"n", "truck",
                                                          41.39, 2.16, 0.0, event="bin_lift", rfid="TAG-NOW",
                                                          weight_kg=4.0))])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM collection_ledger "
                                                         "WHERE lift_at IS NOT NULL") == 1)
        replayed = Reading("MT00", lifted_at, now - timedelta(hours=1), b"replayed", "truck", 41.40, 2.17, 0.0,
                           event="bin_lift", rfid="TAG-LATE", weight_kg=6.0)
        asyncio.run(_commit(settings.database_url, replayed))
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM collection_ledger "
                                                         "WHERE lift_at IS NOT NULL") == 2, timeout_s=20)
    assert scalar(settings.database_url, "SELECT lift_weight_kg FROM collection_ledger WHERE stop_id = 'H-LATE'") == 6


async def _commit(url: str, reading: Reading) -> None:
    from gateway.store.batch import commit_batch
    from gateway.store.pool import open_pool

    pool = await open_pool(url)
    try:
        await commit_batch(pool, Batch(readings=(reading,)))
    finally:
        await pool.close()
