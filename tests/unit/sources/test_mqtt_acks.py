"""A batch's PUBACKs leave as one write with the bytes paho would send one by one; the broker's $SYS
counter is told apart without a paho topic callback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
import pytest

from gateway import metrics
from gateway.events import AckToken, RawMessage
from gateway.sources.mqtt import BROKER_DROPPED_TOPIC, MqttSource, MqttSourceConfig


def source(**config: Any) -> MqttSource:
    return MqttSource(MqttSourceConfig(url="mqtt://127.0.0.1:1", subscriptions=("t/#",), **config))


def message(mid: int, qos: int = 1, connection: int = 0) -> RawMessage:
    return RawMessage("t/1", b"{}", datetime.now(UTC), AckToken(connection, mid, qos))


def test_one_write_with_the_pubacks_paho_would_send(monkeypatch: pytest.MonkeyPatch) -> None:
    batched, single = source(), source()
    queued: list[tuple[Any, ...]] = []
    one_by_one: list[tuple[Any, ...]] = []
    monkeypatch.setattr(batched._client, "_packet_queue", lambda *args: queued.append(args))
    monkeypatch.setattr(single._client, "_packet_queue", lambda *args: one_by_one.append(args))
    mids = [1, 2, 255, 256, 65535]
    batched.ack([message(mid) for mid in mids] + [message(9, connection=-1), message(10, qos=0)])
    for mid in mids:
        single._client.ack(mid, 1)
    assert len(queued) == 1 and queued[0][0] == paho.PUBACK
    assert queued[0][1] == b"".join(args[1] for args in one_by_one)
    assert len(queued[0][1]) == 4 * len(mids)


def test_the_broker_counter_is_not_a_message() -> None:
    s = source()
    dropped = paho.MQTTMessage(topic=BROKER_DROPPED_TOPIC.encode())
    dropped.payload = b"7"
    s._on_message(s._client, None, dropped)
    assert s.pending_count() == 0 and metrics.BROKER_DROPPED._value.get() == 7.0
    reading = paho.MQTTMessage(mid=3, topic=b"t/1")
    reading.payload, reading.qos = b"{}", 1
    s._on_message(s._client, None, reading)
    assert s.pending_count() == 1 and s._pending[0].ack == AckToken(0, 3, 1)
