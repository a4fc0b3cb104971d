"""docker-compose.yml cannot run here (no Docker engine), so it is parsed and checked for consistency."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.settings import Settings
from gateway.sources.mqtt import BrokerAddress
from tests.support import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def resolve(value: str) -> str:
    """What compose substitutes when the variable is unset: the `${VAR:-default}` default."""
    return _DEFAULT.sub(lambda m: m.group(2), value)


def env(service: str) -> dict[str, str]:
    return {k: resolve(str(v)) for k, v in SERVICES[service]["environment"].items()}


def test_the_four_services_and_their_order() -> None:
    assert {name for name, service in SERVICES.items() if "profiles" not in service} == {
        "mosquitto", "timescaledb", "migrate", "wastegate"}
    assert SERVICES["migrate"]["command"] == ["wastegate", "migrate"]
    assert SERVICES["wastegate"]["command"][:2] == ["wastegate", "serve"]
    assert SERVICES["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    assert SERVICES["wastegate"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "timescale" in SERVICES["timescaledb"]["image"]


def test_gateway_and_migrate_share_an_environment_every_setting_knows() -> None:
    assert env("migrate") == env("wastegate")
    known = {f"WASTEGATE_{name.upper()}" for name in Settings.model_fields}
    assert set(env("wastegate")) <= known


def test_database_url_matches_the_database_service() -> None:
    url = urlsplit(env("wastegate")["WASTEGATE_DATABASE_URL"])
    db = env("timescaledb")
    assert url.hostname == "timescaledb" and url.port == 5432
    assert (url.username, url.password, url.path.lstrip("/")) == (
        db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"])


def test_mqtt_url_matches_the_broker_account_and_the_broker_requires_a_password() -> None:
    address = BrokerAddress.parse(env("wastegate")["WASTEGATE_MQTT_URL"])
    broker = env("mosquitto")
    assert address.host == "mosquitto" and address.port == 1883
    assert (address.username, address.password) == (broker["WASTEGATE_MQTT_USER"], broker["WASTEGATE_MQTT_PASSWORD"])
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    assert re.search(r"^password_file ", conf, re.M) and re.search(r"^acl_file ", conf, re.M)


@pytest.mark.parametrize("service", ["mosquitto"])
def test_mounted_files_exist(service: str) -> None:
    for volume in SERVICES[service]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).is_file(), source
    mounts = [v.split(":")[1] for v in SERVICES[service]["volumes"]]
    assert "/mosquitto/config/conf.d/limits.conf" in mounts  # the shared queue limits


def test_acl_lets_the_gateway_read_every_shipped_profile_topic() -> None:
    from gateway.profiles.loader import load_profiles

    acl = (REPO / "deploy/mosquitto/acl").read_text()
    gateway_section = acl.split("user wastegate", 1)[1].split("\n\n", 1)[0]
    for subscription in load_profiles(REPO / "device_profiles").subscriptions:
        assert f"topic read {subscription}" in gateway_section or any(
            f"topic read {prefix}/#" in gateway_section for prefix in [subscription.split("/")[0]])


def test_dockerfile_builds_the_package_and_ships_profiles() -> None:
    dockerfile = Path(REPO / "Dockerfile").read_text()
    assert "pip install" in dockerfile and "COPY device_profiles" in dockerfile


CLUSTER = {name: service for name, service in SERVICES.items() if "cluster" in service.get("profiles", [])}


def test_the_cluster_profile_is_three_rabbitmq_nodes_and_three_replicas() -> None:
    assert set(CLUSTER) == {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3", "wastegate-1", "wastegate-2", "wastegate-3"}
    nodes = {name: CLUSTER[name] for name in CLUSTER if name.startswith("rabbitmq")}
    assert {node["hostname"] for node in nodes.values()} == set(nodes)
    assert len({env(name)["RABBITMQ_ERLANG_COOKIE"] for name in nodes}) == 1  # one cluster
    conf = (REPO / "deploy/rabbitmq/rabbitmq.conf").read_text()
    listed = set(re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.M))
    assert listed == set(nodes)
    plugins = (REPO / "deploy/rabbitmq/enabled_plugins").read_text()
    assert "rabbitmq_mqtt" in plugins and "rabbitmq_consistent_hash_exchange" in plugins
    for node in nodes.values():
        for volume in node["volumes"]:
            source = volume.split(":")[0]
            assert not source.startswith("./") or (REPO / source).is_file(), source


def test_each_replica_consumes_partitions_of_the_cluster_with_its_account() -> None:
    known = {f"WASTEGATE_{name.upper()}" for name in Settings.model_fields}
    hosts = set()
    for name in ("wastegate-1", "wastegate-2", "wastegate-3"):
        replica = env(name)
        assert set(replica) <= known
        url = urlsplit(replica["WASTEGATE_AMQP_URL"])
        node = env(url.hostname or "")
        assert (url.username, url.password) == (node["RABBITMQ_DEFAULT_USER"], node["RABBITMQ_DEFAULT_PASS"])
        assert replica["WASTEGATE_AMQP_QUEUE_TYPE"] == "quorum"  # replicated over the three nodes
        assert replica["WASTEGATE_DATABASE_URL"] == env("wastegate")["WASTEGATE_DATABASE_URL"]
        assert CLUSTER[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        hosts.add(url.hostname)
    assert hosts == {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"}
