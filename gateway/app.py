"""The composition root: builds every stage from Settings and runs them in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import uvicorn
from psycopg_pool import AsyncConnectionPool

from gateway import metrics
from gateway.api.app import create_api
from gateway.api.context import ApiContext
from gateway.catalogue import load_service_codes
from gateway.devices import DeviceDirectory
from gateway.ingest import IngestLimits, Ingestor
from gateway.ingest.frame_counters import FrameCounters
from gateway.ingest.rate_limit import DeviceRateLimiter
from gateway.organisation.jurisdictions import jurisdiction_files
from gateway.organisation.mail.compose import MailComposer, Templates
from gateway.organisation.mail.send import MailSender, SmtpServer
from gateway.organisation.setup import Cities, load_cities
from gateway.pipeline import Pipeline
from gateway.profiles.loader import ProfileSet, load_profiles
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleFileError, RuleSet, files_signature, load_rules
from gateway.settings import Settings
from gateway.sources.mqtt import MqttSourceConfig
from gateway.store.batch import PostgresSink
from gateway.store.devices import load_devices
from gateway.store.migrate import maintain_partitions
from gateway.store.pool import open_pool
from gateway.store.rule_state import load_rule_states
from gateway.webhooks import WebhookDelivery

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def source_config(settings: Settings, profiles: ProfileSet) -> MqttSourceConfig:
    return MqttSourceConfig(
        url=settings.mqtt_url,
        client_id=settings.mqtt_client_id,
        protocol=settings.mqtt_protocol,
        subscriptions=tuple(profiles.subscriptions + settings.mqtt_extra_subscriptions),
        shared_group=settings.mqtt_shared_group,
        receive_maximum=settings.mqtt_receive_maximum,
        session_expiry_s=settings.mqtt_session_expiry_s,
        keepalive_s=settings.mqtt_keepalive_s,
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
    )


def _settle_garbage_collector() -> None:
    """What is loaded at start (profiles, rules, devices, rule state) lives as long as the process: the
    collector stops scanning it. Each batch allocates tens of thousands of short-lived objects that
    reference counting frees; collecting the youngest generation every 700 allocations (the default)
    cost 3 to 9% of the benchmark's end-to-end rate."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _ApiServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handling: the gateway owns the signals and stops the API."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Gateway:
    def __init__(self, settings: Settings, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.profiles = load_profiles(settings.profiles_dir)
        self.jurisdictions = jurisdiction_files(settings)
        # Refused here, before anything starts, with every problem as file:line: reason.
        self.rules = self._load_rules(None)
        self.devices = DeviceDirectory()
        self.engine: RuleEngine | None = None
        self.source = source_config(settings, self.profiles).build()
        self.pipeline: Pipeline | None = None
        self._refused_signature: tuple[tuple[str, int, int], ...] | None = None
        self._database_ok = True
        self.cities: Cities | None = None

    def readiness(self) -> dict[str, bool]:
        checks = {"database": self._database_ok}
        if self.settings.gateway_enabled:
            checks["mqtt"] = self.source.connected.is_set()
            checks["database"] = self.pipeline is not None and self.pipeline.database_ok
        return checks

    async def run(self, stop: asyncio.Event) -> bool:
        """The gateway and the API (each can be switched off), until `stop` is set. False when it stopped
        with messages it could not commit (left unacknowledged: the broker redelivers them)."""
        settings = self.settings
        if settings.gateway_enabled:
            await asyncio.to_thread(self._maintain_partitions)
        pool = await open_pool(settings.database_url)
        try:
            cities = self.cities = await load_cities(settings, pool)
            # Again, now that the organisations a rule may name are known: refused here, with file:line.
            self.rules = self._load_rules(cities)
        except BaseException:
            await pool.close()
            raise
        self._log_start()
        clean = True
        try:
            async with asyncio.TaskGroup() as tasks:
                if settings.gateway_enabled:
                    await self._start_gateway(pool, tasks, stop)
                if settings.api_enabled:
                    tasks.create_task(self._serve_api(stop, pool))
                    for url in settings.webhook_urls:
                        tasks.create_task(WebhookDelivery(pool, url, settings.webhook_secret).run(stop))
                    for org in (org for city in cities.by_id.values() for org in city.organisations):
                        if org.webhook_url:
                            tasks.create_task(WebhookDelivery(pool, org.webhook_url, settings.webhook_secret,
                                                              organisation_id=org.id).run(stop))
                    if settings.smtp_url:
                        self._start_mail(pool, tasks, stop)
                tasks.create_task(self._every(settings.device_refresh_s,
                                              lambda: cities.refresh(pool), stop))
        finally:
            if settings.gateway_enabled:
                await self.source.close()
                clean = self.pipeline is None or not self.pipeline.gave_up
            # Connections still out (a commit abandoned at the end of the grace) are not waited for long.
            await pool.close(timeout=1.0)
        return clean

    def _start_mail(self, pool: AsyncConnectionPool, tasks: asyncio.TaskGroup, stop: asyncio.Event) -> None:
        settings = self.settings
        assert self.cities is not None
        languages = {city.id: (city.catalogue, Templates(city.files.language, city.router.calendar.zone))
                     for city in self.cities.by_id.values()}
        tasks.create_task(MailComposer(pool, languages, settings.base_url, self.clock,
                                       settings.mail_digest_hour, settings.mail_poll_s).run(stop))
        tasks.create_task(MailSender(pool, SmtpServer.from_url(settings.smtp_url), settings.mail_from, self.clock,
                                     settings.mail_poll_s).run(stop))

    def _log_start(self) -> None:
        settings = self.settings
        parts = [f"database {_without_password(settings.database_url)}"]
        if settings.gateway_enabled:
            parts.insert(0, f"broker {_without_password(settings.mqtt_url)}")
            parts.append(f"{len(self.profiles.profiles)} profiles, {len(self.rules.rules)} rules")
        if settings.api_enabled:
            parts.append(f"API on {settings.api_host}:{settings.api_port}")
        log.warning("wastegate starting: %s", "; ".join(parts))

    async def _start_gateway(self, pool: AsyncConnectionPool, tasks: asyncio.TaskGroup, stop: asyncio.Event) -> None:
        settings = self.settings
        await self._refresh_devices(pool)
        counters = FrameCounters({d.device_id: d.last_f_cnt for d in self.devices if d.last_f_cnt is not None})
        ingestor = Ingestor(
            self.profiles, self.devices, self.clock,
            IngestLimits(settings.max_payload_bytes, timedelta(seconds=settings.max_future_s),
                         timedelta(seconds=settings.max_past_s)),
            counters, DeviceRateLimiter(settings.device_rate_limit_per_s, settings.device_rate_window_s),
        )
        async with pool.connection() as conn:
            stored_states = await load_rule_states(conn)
        self.engine = RuleEngine(
            self.rules, self.devices, {p.name: p.config.defaults.expected_interval_s for p in self.profiles.profiles},
            stored_states, {d.device_id: d.last_seen for d in self.devices if d.last_seen is not None},
        )
        assert self.cities is not None, "the municipalities are loaded before the gateway starts"
        sink = PostgresSink(pool, settings.correlation_distance_m, settings.correlation_window_s, self.cities)
        self.pipeline = Pipeline(
            self.source, ingestor, sink, settings.batch_max_size, settings.batch_max_age_ms / 1000,
            self.engine, self.clock, settings.shutdown_grace_s,
        )
        _settle_garbage_collector()
        await self.source.start()
        tasks.create_task(self.pipeline.run(stop))
        tasks.create_task(self._every(settings.device_refresh_s, lambda: self._refresh_devices(pool), stop))
        tasks.create_task(self._every(3600, lambda: asyncio.to_thread(self._maintain_partitions), stop))
        tasks.create_task(self._every(settings.rules_reload_s, self.reload_rules_if_changed, stop))
        tasks.create_task(self._every(settings.sweep_s, self.pipeline.request_sweep, stop))

    def _load_rules(self, cities: Cities | None) -> RuleSet:
        """Each municipality's rules (ids prefixed when there are several), checked against its catalogue and,
        once they are loaded, its organisations."""
        sets = []
        for files in self.jurisdictions:
            city = cities.get(files.id) if cities else None
            sets.append(load_rules(files.rules_dir, load_service_codes(files.services_file),
                                   city.router.organisation_ids if city else None, files.id))
        return RuleSet.merged(sets)

    def reload_rules_if_changed(self) -> bool:
        """Swaps in edited rule files; a set that does not load is refused and the running rules stay."""
        signature = tuple(entry for files in self.jurisdictions for entry in files_signature(files.rules_dir))
        if signature == self.rules.signature or signature == self._refused_signature:
            return False
        try:
            rules = self._load_rules(self.cities)
        except RuleFileError as exc:
            self._refused_signature = signature
            metrics.RULE_RELOADS.labels("refused").inc()
            log.error("rule files refused, the running rules stay in force", extra={"problems": exc.problems})
            return False
        self.rules = rules
        self._refused_signature = None
        if self.engine is not None:
            self.engine.replace_rules(rules)
        metrics.RULE_RELOADS.labels("applied").inc()
        log.warning("rule files reloaded: %d rules", len(rules.rules))
        return True

    async def _refresh_devices(self, pool: AsyncConnectionPool) -> None:
        try:
            async with pool.connection() as conn:
                self.devices.replace_all(await load_devices(conn))
        except psycopg.OperationalError as exc:
            log.warning("device registry not refreshed", extra={"error": str(exc)})
        metrics.DEVICES_KNOWN.set(len(self.devices))

    def _maintain_partitions(self) -> None:
        try:
            with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
                maintain_partitions(conn, self.settings, self.clock().date())
        except psycopg.OperationalError as exc:
            log.warning("telemetry partitions not maintained", extra={"error": str(exc)})

    async def _every(self, period_s: float, action: Callable[[], object], stop: asyncio.Event) -> None:
        """Upkeep beside the pipeline; abandoned at once when stopping (e.g. a refresh waiting for a
        database that is gone), so it never holds up the shutdown."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=period_s)
            except TimeoutError:
                result = action()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    running = asyncio.ensure_future(result)
                    stopping = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                    if not running.done():
                        running.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await running

    async def _serve_api(self, stop: asyncio.Event, pool: AsyncConnectionPool) -> None:
        assert self.cities is not None
        api_context = ApiContext(self.settings, pool, self.profiles, self.clock, self.cities)
        app = create_api(self.readiness, api_context)
        config = uvicorn.Config(
            app, host=self.settings.api_host, port=self.settings.api_port,
            log_level="warning", lifespan="off", timeout_graceful_shutdown=5,
        )
        server = _ApiServer(config)
        serving = asyncio.create_task(server.serve())
        await stop.wait()
        if hasattr(app.state, "console_stopping"):
            app.state.console_stopping.set()
        server.should_exit = True
        await serving
