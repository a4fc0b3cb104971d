"""A gateway with its API and console on a free port, over real Mosquitto and PostgreSQL, and users."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway.app import Gateway
from gateway.console.auth import hash_password
from gateway.embedded.ports import free_port
from gateway.settings import Settings
from gateway.store.users import upsert_user
from tests.support import running_gateway

USERS = {"olga": ("operator", "olga-password-1"), "vera": ("viewer", "vera-password-1")}


@dataclass
class Console:
    url: str
    settings: Settings
    gateway: Gateway


@pytest.fixture
def console(settings: Settings) -> Iterator[Console]:
    port = free_port()
    settings = settings.model_copy(update={"api_enabled": True, "api_port": port, "sweep_s": 1.0,
                                           "device_refresh_s": 0.5,
                                           "open311_api_keys": ["k"]})
    for name, (role, password) in USERS.items():
        upsert_user(settings.database_url, name, hash_password(password), role, None)
    with running_gateway(settings) as gateway:
        yield Console(f"http://127.0.0.1:{port}", settings, gateway)
