"""The composition root: builds every stage from Settings and runs them in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import psycopg
import uvicorn
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway import metrics
from gateway.api.app import create_api
from gateway.api.context import ApiContext
from gateway.catalogue import load_service_codes
from gateway.cluster.lease import LeaseKeeper, new_replica_id
from gateway.cluster.partitions import PartitionKeeper
from gateway.cluster.sweeps import SWEEP_LEASE, DatabaseSweeps
from gateway.devices import DeviceDirectory
from gateway.events import Batch, Fence, RawMessage
from gateway.ingest import IngestLimits, Ingestor
from gateway.ingest.frame_counters import FrameCounters
from gateway.ingest.rate_limit import DeviceRateLimiter
from gateway.ledger.book import Book, books_of
from gateway.ledger.keeping import Entry, update_live
from gateway.ledger.keeping import entries as ledger_entries
from gateway.ledger.keeping import rebuild as rebuild_ledger
from gateway.organisation.jurisdictions import jurisdiction_files
from gateway.organisation.mail.compose import MailComposer, Templates
from gateway.organisation.mail.send import MailSender, SmtpServer
from gateway.organisation.setup import Cities, load_cities
from gateway.pipeline import Pipeline
from gateway.plan.due import PlanRefused, due_on, forecasts_of, places, shift_start, trucks_of
from gateway.plan.routes import Plan, haversine_matrix, plan_routes, routing_service_matrix
from gateway.profiles.loader import ProfileSet, load_profiles
from gateway.rules.engine import RuleEngine
from gateway.rules.forecast import FillForecastRule
from gateway.rules.loader import RuleFileError, RuleSet, files_signature, load_rules
from gateway.settings import Settings
from gateway.sources.amqp import AmqpSource, AmqpSourceConfig
from gateway.sources.mqtt import MqttSource, MqttSourceConfig
from gateway.store.batch import PostgresSink
from gateway.store.devices import load_devices
from gateway.store.leases import Fenced
from gateway.store.migrate import maintain_partitions
from gateway.store.pool import open_pool
from gateway.store.rule_state import (
    load_rule_states,
    load_rule_states_of,
    load_rule_states_of_partition,
)
from gateway.webhooks import WebhookDelivery

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_source(settings: Settings, profiles: ProfileSet) -> MqttSource | AmqpSource:
    """RabbitMQ partitions when `amqp_url` is set, else MQTT."""
    subscriptions = tuple(profiles.subscriptions + settings.mqtt_extra_subscriptions)
    if settings.amqp_url:
        return AmqpSourceConfig(url=settings.amqp_url, subscriptions=subscriptions, partitions=settings.amqp_partitions,
                                prefetch=settings.amqp_prefetch, queue_type=settings.amqp_queue_type).build()
    return source_config(settings, profiles).build()


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


class StartRefused(Exception):
    """The gateway cannot start as configured; the message says why and what to do."""


def mqtt_lease_name(settings: Settings) -> str | None:
    """The lease a replica must hold to consume from MQTT: one consumer per client id (the broker keeps one
    session per id), and one per shared group unless the broker deals a group out by topic. None on
    RabbitMQ, where each partition has its lease."""
    if settings.amqp_url:
        return None
    if settings.mqtt_shared_group:
        return None if settings.mqtt_shared_by_topic else f"mqtt-shared:{settings.mqtt_shared_group}"
    return f"mqtt:{settings.mqtt_client_id}"


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
        self.source = build_source(settings, self.profiles)
        self._partitioned = bool(settings.amqp_url)
        self.pipeline: Pipeline | None = None
        self._refused_signature: tuple[tuple[str, int, int], ...] | None = None
        self._database_ok = True
        self.cities: Cities | None = None
        self.replica_id = settings.replica_id or new_replica_id()
        self.partitions: PartitionKeeper | None = None
        self.leases: list[LeaseKeeper] = []
        self.lost_lease = False  # stopped because another replica took over the MQTT session
        self._books: tuple[tuple[int, int], dict[str, Book]] | None = None
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
        self._renewing: list[asyncio.Task[None]] = []
        consuming: LeaseKeeper | None = None
        try:
            if settings.gateway_enabled:
                consuming = await self._mqtt_lease(pool, stop)
                if consuming is not None:
                    self._keep(consuming)
            async with asyncio.TaskGroup() as tasks:
                if settings.gateway_enabled:
                    tasks.create_task(self._start_gateway_when_allowed(pool, tasks, stop, consuming))
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
                clean = (self.pipeline is None or not self.pipeline.gave_up) and not self.lost_lease
            # The leases go once the last batch made under them is committed (or given up).
            for task in self._renewing:
                task.cancel()
            await asyncio.gather(*self._renewing, return_exceptions=True)
            if self.partitions is not None:
                await self.partitions.leave()
            for lease in self.leases:
                await lease.release()
            # Connections still out (a commit abandoned at the end of the grace) are not waited for long.
            await pool.close(timeout=1.0)
        return clean

    async def sweep_once(self, now: datetime) -> dict[str, int]:
        """The sweeps once at `now`, as the holder of the sweep lease would run them: decided from what is
        committed, committed under the lease (`wastegate sweep`). Refused while a running replica holds it."""
        settings = self.settings
        pool = await open_pool(settings.database_url)
        try:
            cities = self.cities = await load_cities(settings, pool)
            self.rules = self._load_rules(cities)
            await self._refresh_devices(pool)
            lease = LeaseKeeper(pool, SWEEP_LEASE, self.replica_id, settings.lease_s)
            fence = await lease.try_once()
            if fence is None:
                holder = lease.other.holder if lease.other else "another replica"
                raise StartRefused(f"the sweeps are {holder}'s, a running replica: they run there every "
                                   f"WASTEGATE_SWEEP_S; stop it, or wait, to sweep from here")
            try:
                sweeps = DatabaseSweeps(pool, lease)
                engine = RuleEngine(self.rules, self.devices,
                                    {p.name: p.config.defaults.expected_interval_s for p in self.profiles.profiles},
                                    await sweeps.committed_states(self._sweeping_ids()))
                engine.remembers_readings = False
                found = engine.sweep(now, await sweeps.facts(engine.sweep_questions(now)))
                sink = PostgresSink(pool, settings.correlation_distance_m, settings.correlation_window_s, cities)
                stats = await sink.commit(Batch(findings=found.findings, states=found.states, fences=(fence,)))
                async with pool.connection() as conn:
                    for book in self.ledger_books().values():
                        await update_live(conn, book, (fence,), timedelta(seconds=self.settings.ledger_late_s))
            finally:
                await lease.release()
        finally:
            await pool.close()
        return {"findings": len(found.findings), "opened": len(stats.cases.opened),
                "resolved": len(stats.cases.resolved)}

    async def ledger(self, first: date, last: date, *, rebuild: bool = False) -> list[Entry]:
        """The ledger of days [first, last] (`wastegate ledger`), rebuilt from history first when asked."""
        pool = await open_pool(self.settings.database_url)
        try:
            self.cities = await load_cities(self.settings, pool)
            self.rules = self._load_rules(self.cities)
            await self._refresh_devices(pool)
            found: list[Entry] = []
            async with pool.connection() as conn:
                for book in self.ledger_books().values():
                    if rebuild:
                        await rebuild_ledger(conn, book, first, last)
                    found.extend(await ledger_entries(conn, book, first, last, self.clock()))
            return found
        finally:
            await pool.close()

    async def plan(self, day: date, threshold: float, jurisdiction: str = "") -> Plan:
        """Tomorrow's route (`wastegate plan`): the containers due on `day` and a route per truck."""
        pool = await open_pool(self.settings.database_url)
        try:
            self.cities = await load_cities(self.settings, pool)
            self.rules = self._load_rules(self.cities)
            await self._refresh_devices(pool)
            return await self.plan_with(pool, day, threshold, jurisdiction)
        finally:
            await pool.close()

    async def plan_with(self, pool: AsyncConnectionPool, day: date, threshold: float, jurisdiction: str) -> Plan:
        """A municipality's plan of a day from its rules, its devices and the forecasts committed (the CLI,
        the API)."""
        files = next((f for f in self.jurisdictions if f.id == jurisdiction), None)
        if files is None:
            raise PlanRefused(f"no jurisdiction {jurisdiction!r}")
        forecasting = [r for r in self.rules.rules
                       if isinstance(r, FillForecastRule) and r.jurisdiction == jurisdiction]
        devices = [d for d in self.devices if d.jurisdiction == jurisdiction]
        async with pool.connection() as conn:
            states = await load_rule_states_of(conn, [r.id for r in forecasting])
        tz = forecasting[0].tz if forecasting else ZoneInfo("UTC")
        zones = files.rules_dir / "zones"
        depots, transfer = places(zones, "depots"), places(zones, "transfer-stations")[0]
        due = due_on(day, devices, forecasts_of(states, {r.id for r in forecasting}, shift_start(day, tz)),
                     tz, threshold)
        matrix = routing_service_matrix(self.settings.routing_matrix_url) if self.settings.routing_matrix_url \
            else haversine_matrix
        return await asyncio.to_thread(plan_routes, day.isoformat(), due, trucks_of(devices, depots),
                                       depots[0], transfer, matrix)

    def _sweeping_ids(self) -> list[str]:
        return [rule.id for rule in self.rules.rules if rule.sweeps]

    def _keep(self, lease: LeaseKeeper) -> None:
        """Renews `lease` from now until the gateway has stopped (outside the TaskGroup: a lease outlives the
        pipeline's last commit), then lets it go."""
        self.leases.append(lease)
        self._renewing.append(asyncio.create_task(lease.run()))

    async def _mqtt_lease(self, pool: AsyncConnectionPool, stop: asyncio.Event) -> LeaseKeeper | None:
        """The MQTT session's lease, taken now unless this replica is a standby (it waits in the background).
        An active replica that finds another consuming the same session or group is refused here."""
        settings = self.settings
        name = mqtt_lease_name(settings)
        if name is None:
            return None
        lease = LeaseKeeper(pool, name, self.replica_id, settings.lease_s)
        if settings.standby:
            return lease
        # A replica that died holds its lease until it expires: wait that long before refusing.
        if await lease.wait_held(stop, give_up_after_s=settings.lease_s * 4 / 3) is None and not stop.is_set():
            holder = lease.other.holder if lease.other else "another replica"
            what = (f"shared group {settings.mqtt_shared_group!r}" if settings.mqtt_shared_group
                    else f"client id {settings.mqtt_client_id!r}")
            raise StartRefused(
                f"{holder} is already consuming as {what}. A second active replica would split devices' "
                "readings (the broker deals a shared group out in turn, or takes a session from one "
                "connection to give it to the other), and per-device rules would see half the story. Start "
                "this one with WASTEGATE_STANDBY=true to take over when that one stops, or, on a broker "
                "that deals a shared group out by topic (EMQX hash_topic), set WASTEGATE_MQTT_SHARED_BY_TOPIC=true; "
                "for active replicas on RabbitMQ, set WASTEGATE_AMQP_URL.")
        return lease

    async def _start_gateway_when_allowed(self, pool: AsyncConnectionPool, tasks: asyncio.TaskGroup,
                                          stop: asyncio.Event, consuming: LeaseKeeper | None) -> None:
        if consuming is not None and consuming.held() is None:
            log.warning("standby: waiting for the MQTT session held by %s",
                        consuming.other.holder if consuming.other else "another replica")
            if await consuming.wait_held(stop) is None:
                return  # stopped while waiting
        # Only a replica that consumes competes for the sweeps (a standby would hold them idle).
        sweeping = LeaseKeeper(pool, SWEEP_LEASE, self.replica_id, self.settings.lease_s)
        self._keep(sweeping)
        await self._start_gateway(pool, tasks, stop, consuming, sweeping)
        if consuming is not None:
            tasks.create_task(self._stop_when_lost(consuming, stop))

    async def _stop_when_lost(self, lease: LeaseKeeper, stop: asyncio.Event) -> None:
        lost = asyncio.ensure_future(lease.lost.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        stopping.cancel()
        if lease.lost.is_set():
            self._lost(None)
            stop.set()

    async def _stop_when_broker_lost(self, source: AmqpSource, stop: asyncio.Event) -> None:
        """RabbitMQ gone: every partition went with the connection (the broker requeues what was not
        acknowledged). The replica stops, non-zero, for its supervisor to start it again; the others take
        its partitions meanwhile."""
        lost = asyncio.ensure_future(source.lost.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        stopping.cancel()
        if source.lost.is_set() and not stop.is_set():
            log.error("the connection to RabbitMQ is lost: stopping (its partitions go to the other replicas)")
            self.lost_lease = True
            stop.set()

    async def _load_partition(self, pool: AsyncConnectionPool, partition: int) -> None:
        """Before a gained partition's first message: its rule states as committed, in place of what this
        replica remembers of its devices from when it last held it."""
        assert self.engine is not None and self.pipeline is not None
        async with pool.connection() as conn:
            stored = await load_rule_states_of_partition(conn, partition)
        devices = {device for device, p in self.pipeline.device_partitions.items() if p == partition}
        devices.update(subject for _, subject, _ in stored)
        sweeping = set(self.engine.sweeping_rule_ids)
        self.engine.take_over_states(lambda key: key[0] not in sweeping and key[1] in devices, stored)

    def _lost(self, fenced: Fenced | None) -> None:
        if not self.lost_lease:
            log.error("another replica has taken over the MQTT session: stopping, nothing more is committed "
                      "or acknowledged here (start again with WASTEGATE_STANDBY=true to stand by)",
                      extra={"fenced": str(fenced) if fenced else None})
        self.lost_lease = True

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

    async def _start_gateway(self, pool: AsyncConnectionPool, tasks: asyncio.TaskGroup, stop: asyncio.Event,
                             consuming: LeaseKeeper | None, sweeping: LeaseKeeper) -> None:
        """Once this replica may consume: the rules' states as committed (a standby taking over starts from
        its predecessor's), then the pipeline."""
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
            # Partitioned: the sweeps' states only; each partition's come with its lease (`_load_partition`).
            stored_states = await (load_rule_states_of(conn, self._sweeping_ids()) if self._partitioned
                                   else load_rule_states(conn))
        self.engine = RuleEngine(
            self.rules, self.devices, {p.name: p.config.defaults.expected_interval_s for p in self.profiles.profiles},
            stored_states, {d.device_id: d.last_seen for d in self.devices if d.last_seen is not None},
        )
        self.engine.remembers_readings = False  # its sweeps ask the database (DatabaseSweeps)
        assert self.cities is not None, "the municipalities are loaded before the gateway starts"
        sink = PostgresSink(pool, settings.correlation_distance_m, settings.correlation_window_s, self.cities)
        def fences(batch: Sequence[RawMessage]) -> tuple[Fence, ...]:
            if self.partitions is not None:
                return self.partitions.fences(batch)
            return (consuming.last_fence,) if consuming is not None and consuming.last_fence else ()

        def fenced(exc: Fenced, batch: Sequence[RawMessage]) -> bool:
            if self.partitions is not None:
                self.partitions.abandon(batch)  # requeued by the broker, taken again from what is committed
                return True
            self._lost(exc)
            stop.set()
            return False

        source = self.source
        self.pipeline = Pipeline(
            source, ingestor, sink, settings.batch_max_size, settings.batch_max_age_ms / 1000,
            self.engine, self.clock, settings.shutdown_grace_s, DatabaseSweeps(pool, sweeping), fences, fenced,
            source.partition if isinstance(source, AmqpSource) else None,
        )
        _settle_garbage_collector()
        await source.start()
        if isinstance(source, AmqpSource):
            self.partitions = PartitionKeeper(pool, source, self.replica_id, settings.lease_s,
                                              source.config.partitions, lambda p: self._load_partition(pool, p))
            self._renewing.append(asyncio.create_task(self.partitions.run()))
            tasks.create_task(self._stop_when_broker_lost(source, stop))
        tasks.create_task(self.pipeline.run(stop))
        tasks.create_task(self._every(settings.device_refresh_s, lambda: self._refresh_devices(pool), stop))
        tasks.create_task(self._every(3600, lambda: asyncio.to_thread(self._maintain_partitions), stop))
        tasks.create_task(self._every(settings.rules_reload_s, self.reload_rules_if_changed, stop))
        tasks.create_task(self._every(settings.sweep_s, self.pipeline.request_sweep, stop))
        tasks.create_task(self._every(settings.ledger_s, lambda: self._ledger_round(pool, sweeping), stop))

    def ledger_books(self) -> dict[str, Book]:
        """Per municipality, the stops on a collection schedule, as the rules and the registry say now."""
        key = (id(self.rules), self.devices.version)
        if self._books is None or self._books[0] != key:
            self._books = (key, books_of(self.rules, self.devices, self.settings.ledger_pass_m))
        return self._books[1]

    async def _ledger_round(self, pool: AsyncConnectionPool, sweeping: LeaseKeeper) -> None:
        """The live ledger, kept by the holder of the sweep lease from what is committed."""
        fence = sweeping.held()
        if fence is None:
            return
        try:
            async with pool.connection() as conn:
                for book in self.ledger_books().values():
                    await update_live(conn, book, (fence,), timedelta(seconds=self.settings.ledger_late_s))
        except (psycopg.OperationalError, PoolTimeout, Fenced) as exc:
            log.warning("ledger round skipped", extra={"error": str(exc)})
        except Exception:
            log.exception("ledger round failed")

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
        api_context = ApiContext(
            self.settings, pool, self.profiles, self.clock, self.cities, self.ledger_books,
            planner=lambda day, threshold, where: self.plan_with(pool, day, threshold, where),
            forecast_rule_ids=lambda: [r.id for r in self.rules.rules if isinstance(r, FillForecastRule)])
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
