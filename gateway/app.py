"""The composition root: builds every stage from Settings and runs them in one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import uvicorn
from psycopg_pool import AsyncConnectionPool

from gateway import metrics
from gateway.api.app import create_api
from gateway.devices import DeviceDirectory
from gateway.frame_counters import FrameCounters
from gateway.ingest import Ingestor
from gateway.normalize import Normalizer
from gateway.pipeline import Pipeline
from gateway.profiles.loader import ProfileSet, load_profiles
from gateway.settings import Settings
from gateway.sources.mqtt import MqttSourceConfig
from gateway.store.devices import load_devices
from gateway.store.migrate import maintain_partitions
from gateway.store.pool import open_pool

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def source_config(settings: Settings, profiles: ProfileSet) -> MqttSourceConfig:
    return MqttSourceConfig(
        url=settings.mqtt_url,
        client_id=settings.mqtt_client_id,
        subscriptions=tuple(profiles.subscriptions + settings.mqtt_extra_subscriptions),
        shared_group=settings.mqtt_shared_group,
        receive_maximum=settings.mqtt_receive_maximum,
        session_expiry_s=settings.mqtt_session_expiry_s,
        keepalive_s=settings.mqtt_keepalive_s,
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
    )


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
        self.devices = DeviceDirectory()
        self.source = source_config(settings, self.profiles).build()
        self.pipeline: Pipeline | None = None

    def readiness(self) -> dict[str, bool]:
        return {
            "mqtt": self.source.connected.is_set(),
            "database": self.pipeline is not None and self.pipeline.database_ok,
        }

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        await asyncio.to_thread(self._maintain_partitions)
        pool = await open_pool(settings.database_url)
        try:
            await self._refresh_devices(pool)
            counters = FrameCounters({d.device_id: d.last_f_cnt for d in self.devices if d.last_f_cnt is not None})
            normalizer = Normalizer(
                self.devices, timedelta(seconds=settings.max_future_s), timedelta(seconds=settings.max_past_s),
                counters,
            )
            ingestor = Ingestor(self.profiles, normalizer, settings.max_payload_bytes, self.clock)
            kinds = {p.name: p.config.kind for p in self.profiles.profiles}
            self.pipeline = Pipeline(
                self.source, ingestor, pool, kinds, settings.batch_max_size, settings.batch_max_age_ms / 1000
            )
            await self.source.start()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.pipeline.run(stop))
                tasks.create_task(self._every(settings.device_refresh_s, lambda: self._refresh_devices(pool), stop))
                tasks.create_task(self._every(3600, lambda: asyncio.to_thread(self._maintain_partitions), stop))
                if settings.api_enabled:
                    tasks.create_task(self._serve_api(stop))
        finally:
            await self.source.close()
            await pool.close()

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
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=period_s)
            except TimeoutError:
                result = action()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result

    async def _serve_api(self, stop: asyncio.Event) -> None:
        config = uvicorn.Config(
            create_api(self.readiness), host=self.settings.api_host, port=self.settings.api_port,
            log_level="warning", lifespan="off",
        )
        server = _ApiServer(config)
        serving = asyncio.create_task(server.serve())
        await stop.wait()
        server.should_exit = True
        await serving
