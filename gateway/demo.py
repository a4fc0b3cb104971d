"""`wastegate demo`: the whole gateway on a throwaway Mosquitto and PostgreSQL, with sample traffic."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import typer

from gateway.app import Gateway
from gateway.embedded.mosquitto import Mosquitto
from gateway.embedded.postgres import Postgres
from gateway.settings import Settings
from gateway.sources.mqtt import MqttPublisher
from gateway.store.devices import upsert_devices
from gateway.store.migrate import apply_storage_policies, migrate
from simulators.basic import BasicCity

REPO_PROFILES = Path(__file__).resolve().parent.parent / "device_profiles"


def run_demo(duration_s: float | None, api_port: int) -> int:
    with tempfile.TemporaryDirectory(prefix="wastegate-demo-") as tmp:
        directory = Path(tmp)
        typer.echo(f"starting Mosquitto and PostgreSQL in {directory} …")
        with Postgres(directory / "postgres") as postgres, Mosquitto(directory / "mosquitto") as broker:
            database_url = postgres.url()
            migrate(database_url)
            settings = Settings(
                database_url=database_url, mqtt_url=broker.url, mqtt_client_id="wastegate-demo",
                profiles_dir=Path("device_profiles") if Path("device_profiles").is_dir() else REPO_PROFILES,
                api_port=api_port,
            )
            apply_storage_policies(database_url, settings)
            city = BasicCity()
            upsert_devices(database_url, city.registered_devices())
            typer.echo(f"broker  {broker.url}\ndatabase {database_url}\nAPI     http://{settings.api_host}:{api_port}")
            typer.echo(f"try:    curl -s http://{settings.api_host}:{api_port}/readyz")
            typer.echo(f"        mosquitto_pub -p {broker.port} -q 1 -t trucks/T1/telemetry -m "
                       f"'{{\"ts\": \"{datetime.now(UTC).isoformat()}\", \"lat\": 41.39, \"lon\": 2.16}}'")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_run(settings, city, duration_s))
            _summary(database_url)
    typer.echo("stopped; the temporary broker and database are removed")
    return 0


async def _run(settings: Settings, city: BasicCity, duration_s: float | None) -> None:
    gateway = Gateway(settings)
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    publisher = await asyncio.to_thread(MqttPublisher, settings.mqtt_url, "wastegate-demo-traffic")
    started = time.monotonic()
    try:
        while duration_s is None or time.monotonic() - started < duration_s:
            messages = list(city.step(datetime.now(UTC)))
            for topic, payload in messages:
                publisher.publish(topic, payload)
            if city.tick % 5 == 0:
                await asyncio.to_thread(_status, settings.database_url, time.monotonic() - started)
            await asyncio.sleep(1.0)
    finally:
        publisher.close()
        stop.set()
        await running


def _status(database_url: str, elapsed: float) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT device_id) FROM telemetry").fetchone()
        rejected = conn.execute("SELECT count(*) FROM rejected_messages").fetchone()
        incidents = conn.execute("SELECT count(*) FROM incidents WHERE status NOT IN ('resolved', 'closed')").fetchone()
    assert rows and rejected and incidents
    typer.echo(f"{elapsed:5.0f}s  telemetry rows {rows[0]:6d}  devices {rows[1]:3d}  dead letter {rejected[0]:4d}"
               f"  open incidents {incidents[0]:3d}")


def _summary(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        total = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        reasons = conn.execute("SELECT reason, count(*) FROM rejected_messages GROUP BY 1 ORDER BY 2 DESC").fetchall()
        fullest = conn.execute(
            "SELECT DISTINCT ON (device_id) device_id, fill_pct FROM telemetry WHERE fill_pct IS NOT NULL "
            "ORDER BY device_id, time DESC").fetchall()
    typer.echo(f"\ntelemetry rows: {total[0] if total else 0}")
    typer.echo("dead letter: " + (", ".join(f"{reason} {count}" for reason, count in reasons) or "empty"))
    top = sorted(fullest, key=lambda row: -row[1])[:5]
    typer.echo("fullest containers: " + ", ".join(f"{d} {f:.0f}%" for d, f in top))
    with psycopg.connect(database_url) as conn:
        by_code = conn.execute(
            "SELECT service_code, status, count(*) FROM incidents GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        latest = conn.execute("SELECT title FROM incidents ORDER BY id DESC LIMIT 5").fetchall()
    typer.echo("incidents: " + (", ".join(f"{code} {status} {n}" for code, status, n in by_code) or "none"))
    for (title,) in latest:
        typer.echo(f"  - {title}")
