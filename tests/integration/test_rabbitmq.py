"""RabbitMQ partitions on a real RabbitMQ (its MQTT and consistent-hash plugins), with PostgreSQL: devices
publish MQTT to RabbitMQ; replicas consume the partitions they hold, in order, and acknowledge only what
is committed; partitions move when a replica joins, stops or dies, with the rules' states and fenced."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gateway.settings import Settings
from gateway.sources.amqp import binding_key, mqtt_topic
from gateway.sources.mqtt import MqttPublisher
from tests.conftest import RabbitVhost
from tests.support import running_gateway, scalar, sql, wait_until

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def truck(index: int, devices: int = 25) -> tuple[str, str]:
    at = START + timedelta(milliseconds=index)
    return f"trucks/T{index % devices}/telemetry", json.dumps({"ts": at.isoformat(), "lat": 41.38, "lon": 2.17,
                                                                 "seq": index})


def publish_mqtt(url: str, messages: list[tuple[str, str]]) -> None:
    with MqttPublisher(url, protocol="3.1.1") as publisher:  # RabbitMQ 3.10 speaks MQTT 3.1.1
        publisher.publish_many(messages)


def test_topics_come_back_as_the_device_published_them() -> None:
    assert mqtt_topic("trucks.T5.telemetry") == "trucks/T5/telemetry"
    assert binding_key("trucks/+/telemetry") == "trucks.*.telemetry"
    assert binding_key("lorawan/#") == "lorawan.#"


def test_one_replica_consumes_every_partition_and_stores_what_devices_published(
        settings: Settings, rabbitmq: RabbitVhost) -> None:
    url = settings.database_url
    settings = settings.model_copy(update={"amqp_url": rabbitmq.amqp_url, "amqp_partitions": 4, "lease_s": 3.0,
                                           "api_enabled": False})
    with running_gateway(settings) as gateway:
        wait_until(lambda: gateway.partitions is not None and len(gateway.partitions.held) == 4)
        publish_mqtt(rabbitmq.mqtt_url, [truck(i) for i in range(200)])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 200)
    devices = {row[0] for row in sql(url, "SELECT DISTINCT device_id FROM telemetry")}
    assert devices == {f"T{i}" for i in range(25)}
    queues = rabbitmq.node.ctl("list_queues", "-p", rabbitmq.vhost, "name", "messages", "arguments")
    assert queues.count("wastegate.devices.0") == 4 and "x-single-active-consumer" in queues
    partitions = {row[0] for row in sql(url, "SELECT name FROM leases WHERE holder IS NULL")}
    assert {f"partition:{p}" for p in range(4)} <= partitions  # let go at the clean stop
