"""Session fixtures: a real PostgreSQL and per-test Mosquitto brokers on loopback, in temporary directories.

PostgreSQL starts once; the schema is migrated once into a template database that every test clones.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings as hypothesis_settings

from gateway.embedded.mosquitto import Mosquitto
from gateway.embedded.postgres import Postgres
from gateway.embedded.rabbitmq import RabbitMQ, find_rabbitmq
from gateway.settings import Settings
from gateway.store.migrate import apply_storage_policies, migrate
from tests.mail import smtp  # noqa: F401  (the SMTP server fixture, for every test that needs one)
from tests.support import REPO

# Property-based tests are the same run every time (CI, `./run test`): derandomized, no example database.
# `./run fuzz` (WASTEGATE_FUZZ=explore) explores at random instead; what it finds becomes a regression test.
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("explore" if os.environ.get("WASTEGATE_FUZZ") == "explore" else "deterministic")

TEMPLATE = "wastegate_template"
_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres")).start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        migrate(server.url(TEMPLATE))
        apply_storage_policies(server.url(TEMPLATE), Settings())
        yield server
    finally:
        server.stop("immediate")


def _throwaway_database(postgres: Postgres, prefix: str, template: str | None) -> Iterator[str]:
    name = f"{prefix}_{next(_db_numbers)}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    yield postgres.url(name)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One RabbitMQ node for the session (it takes about ten seconds to start), with the MQTT and
    consistent-hash plugins; each test gets a virtual host of its own (`rabbitmq`)."""
    if find_rabbitmq() is None:
        pytest.fail("rabbitmq-server is not installed: .ci/run installs it (Debian: apt-get install rabbitmq-server)")
    with RabbitMQ(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node


@pytest.fixture
def rabbitmq(rabbitmq_node: RabbitMQ) -> Iterator[RabbitVhost]:
    """A fresh virtual host of the session's node: its own exchanges and queues, nothing left by another test."""
    vhost = f"t{next(_db_numbers)}"
    rabbitmq_node.ctl("add_vhost", vhost)
    rabbitmq_node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield RabbitVhost(rabbitmq_node, vhost)
    rabbitmq_node.ctl("delete_vhost", vhost)


class RabbitVhost:
    def __init__(self, node: RabbitMQ, vhost: str) -> None:
        self.node = node
        self.vhost = vhost
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/{vhost}"
        # RabbitMQ's MQTT plugin takes the virtual host from the user name, `vhost:user`
        self.mqtt_url = f"mqtt://{vhost}%3Aguest:guest@127.0.0.1:{node.mqtt_port}"


@pytest.fixture
def database_url(postgres: Postgres) -> Iterator[str]:
    """A fresh, migrated database cloned from the template."""
    yield from _throwaway_database(postgres, "test", TEMPLATE)


@pytest.fixture
def empty_database_url(postgres: Postgres) -> Iterator[str]:
    yield from _throwaway_database(postgres, "empty", None)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto") as server:
        yield server


@pytest.fixture
def settings(database_url: str, broker: Mosquitto, request: pytest.FixtureRequest) -> Settings:
    return Settings(
        database_url=database_url,
        mqtt_url=broker.url,
        mqtt_client_id=f"wastegate-test-{request.node.name[:40]}",
        profiles_dir=REPO / "device_profiles",
        rules_dir=REPO / "rules",
        services_file=REPO / "services.yaml",
        api_enabled=False,
        batch_max_age_ms=50,
        # Tests publish bursts far above a device's normal rate; test_faults.py turns the limit on.
        device_rate_limit_per_s=0,
        _env_file=None,
    )
