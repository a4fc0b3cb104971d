"""Property-based requests over the API's own OpenAPI document (schemathesis): whatever a client sends,
the API answers with a status below 500.

By default (`./run test`, CI) the run is deterministic: derandomized, a fixed number of examples per
operation, no example database, so a clean clone passes or fails the same way every time. `./run fuzz`
(WASTEGATE_FUZZ=explore) explores instead: random, WASTEGATE_FUZZ_EXAMPLES examples per operation (1000),
seeded from WASTEGATE_FUZZ_SEED when given and printed with any failure, so that a failure it finds can be
replayed and turned into a regression test (tests/integration/test_api_bounds.py holds those so far).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from psycopg_pool import AsyncConnectionPool

from gateway.api.app import create_api
from gateway.api.context import ApiContext
from gateway.catalogue import load_catalogue
from gateway.embedded.ports import free_port
from gateway.organisation.jurisdictions import jurisdiction_files
from gateway.organisation.routing import Router
from gateway.organisation.setup import Cities, City
from gateway.profiles.loader import load_profiles
from gateway.settings import Settings
from tests.integration.test_api import KEY, TOKENS, _up
from tests.support import REPO, running_gateway, wait_until

# The document as the running API serves it (built here without a database, only to read it).
_SETTINGS = Settings(_env_file=None)
_CATALOGUE = load_catalogue(REPO / "services.yaml")
_CITY = City(jurisdiction_files(_SETTINGS)[0], _CATALOGUE, Router(_CATALOGUE, {}), [])
_OFFLINE = ApiContext(_SETTINGS, AsyncConnectionPool("", open=False), load_profiles(REPO / "device_profiles"),
                      lambda: None, Cities({"": _CITY}))  # type: ignore[arg-type,return-value]
SCHEMA = schemathesis.openapi.from_dict(create_api(lambda: {}, _OFFLINE).openapi())


@pytest.fixture(scope="module")
def live_api(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One gateway with its API for the whole module: hypothesis sends many requests per operation."""
    import psycopg

    from gateway.embedded.mosquitto import Mosquitto

    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fuzz TEMPLATE wastegate_template")
    port = free_port()
    try:
        with Mosquitto(tmp_path_factory.mktemp("fuzz-broker")) as broker:
            gateway_settings = Settings(
                database_url=postgres.url("fuzz"), mqtt_url=broker.url, mqtt_client_id="fuzz",
                profiles_dir=REPO / "device_profiles", rules_dir=REPO / "rules", services_file=REPO / "services.yaml",
                api_port=port, open311_api_keys=[KEY], api_tokens=[f"{TOKENS['admin']}:admin"],
                _env_file=None)
            with running_gateway(gateway_settings):
                base = f"http://127.0.0.1:{port}"
                wait_until(lambda: _up(base))
                yield base
    finally:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS fuzz WITH (FORCE)")


EXPLORE = os.environ.get("WASTEGATE_FUZZ", "") == "explore"
SEED = int(os.environ.get("WASTEGATE_FUZZ_SEED") or random.getrandbits(32)) if EXPLORE else None
if EXPLORE:
    FUZZ = settings(max_examples=int(os.environ.get("WASTEGATE_FUZZ_EXAMPLES") or 1000), deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)
    SEEDED: Callable[[Any], Any] = seed(SEED)
else:
    FUZZ = settings(max_examples=25, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))

    def SEEDED(test: Any) -> Any:
        return test


@SCHEMA.parametrize()
@FUZZ
@SEEDED
def test_no_server_errors(case: Any, live_api: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS['admin']}"}
    response = case.call(base_url=live_api)
    replay = f" (replay: WASTEGATE_FUZZ=explore WASTEGATE_FUZZ_SEED={SEED})" if EXPLORE else ""
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}{replay}\n"
        f"{case.as_curl_command()}")


def test_the_document_covers_the_routes() -> None:
    paths = set(SCHEMA.raw_schema["paths"])
    assert {"/open311/v2/requests.{fmt}", "/api/v1/incidents", "/api/v1/incidents/{incident_id}/actions",
            "/api/v1/devices/{device_id}/telemetry", "/readyz"} <= paths
