"""Helpers shared by the integration tests: a gateway on a thread, polling, SQL, publishing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from gateway.app import Gateway
from gateway.settings import Settings
from gateway.sources.mqtt import MqttPublisher

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
        time.sleep(interval_s)


def sql(url: str, statement: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def scalar(url: str, statement: str, params: Sequence[Any] | None = None) -> Any:
    return sql(url, statement, params)[0][0]


def publish(mqtt_url: str, messages: Sequence[tuple[str, bytes | str]]) -> None:
    with MqttPublisher(mqtt_url) as publisher:
        publisher.publish_many(messages)


def publish_until(mqtt_url: str, messages: Sequence[tuple[str, bytes | str]], predicate: Callable[[], T],
                  timeout_s: float = 30.0, interval_s: float = 0.3) -> T:
    """Publishes (idempotent) `messages` again and again until `predicate` holds: until a gateway started
    in another process has subscribed, what is published goes nowhere."""
    def published_then() -> T:
        publish(mqtt_url, messages)
        return predicate()

    return wait_until(published_then, timeout_s, interval_s)


def serve(settings: Settings, api_port: int, **more_env: str) -> subprocess.Popen[bytes]:
    """`wastegate serve` as a real process (to be killed), on the settings' broker and database."""
    env = {
        **os.environ,
        "WASTEGATE_DATABASE_URL": settings.database_url,
        "WASTEGATE_MQTT_URL": settings.mqtt_url,
        "WASTEGATE_MQTT_CLIENT_ID": "wastegate-shutdown-test",
        "WASTEGATE_PROFILES_DIR": str(settings.profiles_dir),
        "WASTEGATE_API_PORT": str(api_port),
        "WASTEGATE_BATCH_MAX_SIZE": "200",
        "WASTEGATE_DEVICE_RATE_LIMIT_PER_S": "0",
        **more_env,
    }
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env, cwd=REPO,
                            stderr=subprocess.PIPE)


@contextmanager
def running_gateway(settings: Settings, clock: Callable[[], Any] | None = None,
                    wait_for_mqtt: bool = True) -> Iterator[Gateway]:
    """Runs a Gateway on its own event loop thread; stops it (flush, commit, ack) on exit."""
    gateway = Gateway(settings, clock) if clock else Gateway(settings)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(gateway.run(stop))
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=main, name="gateway", daemon=True)
    thread.start()
    try:
        if wait_for_mqtt:
            wait_until(lambda: gateway.source.connected.is_set() or failure, timeout_s=20)
            if failure:
                raise failure[0]
            # The subscription is sent right after CONNACK; give the broker a moment to register it.
            time.sleep(0.2)
        yield gateway
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
    if failure:
        raise failure[0]


def api_up(base: str) -> bool:
    """Whether the HTTP API at `base` answers its liveness probe."""
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def console_client(base: str, name: str, password: str) -> Any:
    """An httpx client signed in to the console at `base` as `name` (the caller closes it)."""
    import re

    import httpx

    client = httpx.Client(base_url=base, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/signin").text)
    assert token, "the sign-in form has a CSRF token"
    answer = client.post("/console/signin", data={"name": name, "password": password, "csrf_token": token.group(1),
                                                  "next": "/console/incidents"})
    assert answer.status_code == 303, answer.text
    return client


def follow_link(database_url: str, incident_id: int) -> str:
    """The reporter's private follow link of an incident (as their receipt gives it)."""
    from gateway.organisation.follow import follow_key, follow_path

    async def key() -> bytes:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await follow_key(conn)

    return follow_path(asyncio.run(key()), incident_id)
