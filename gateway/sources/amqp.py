"""RabbitMQ partitions: devices publish MQTT to RabbitMQ (its `rabbitmq_mqtt` plugin, into `amq.topic`);
a consistent-hash exchange bound to `amq.topic` deals each device's topic to one of N partition queues,
each with a single active consumer, so the broker never delivers one queue to two consumers at once and a
device's readings stay in order on one replica. Which replica consumes which partition is decided beside
this (`gateway/cluster/partitions.py`): this source only consumes the partitions it is told to, one
channel each, and acknowledges a message over AMQP once the batch holding it is committed.

The only module that imports the AMQP client library (aio-pika). RabbitMQ's MQTT plugin turns a topic's
`/` into `.` in the routing key: mapped back here, so the same profiles decode the same topics as from
Mosquitto. (RabbitMQ 3.10 leaves a `.` of the topic as it is, so a topic level with a dot in it cannot be
told apart: device ids on RabbitMQ must not contain dots.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import BaseModel, ConfigDict, Field

from gateway import metrics
from gateway.events import AckToken, RawMessage
from gateway.sources.base import wait_either

log = logging.getLogger(__name__)

EXCHANGE = "wastegate.devices"


def mqtt_topic(routing_key: str) -> str:
    """The MQTT topic a device published on, from the routing key RabbitMQ's MQTT plugin gave it."""
    return routing_key.replace(".", "/")


def binding_key(mqtt_filter: str) -> str:
    """An MQTT subscription filter as an AMQP topic binding key (`+` is `*`, `/` is `.`)."""
    return ".".join("*" if level == "+" else level for level in mqtt_filter.split("/"))


class SourceUnavailable(Exception):
    """RabbitMQ refused or dropped what was asked (a channel, a consumer)."""


def queue_name(partition: int) -> str:
    return f"{EXCHANGE}.{partition:02d}"


class AmqpSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    subscriptions: tuple[str, ...]
    partitions: int = Field(default=16, ge=1, le=256)
    # Unacknowledged messages per partition in flight towards this replica: the bound on in-flight work.
    prefetch: int = Field(default=1000, ge=1, le=65535)
    # `quorum` on a RabbitMQ cluster (replicated queues); `classic` on a single node.
    queue_type: Literal["classic", "quorum"] = "classic"

    def build(self) -> AmqpSource:
        return AmqpSource(self)


@dataclass(slots=True)
class _Consumer:
    partition: int
    generation: int  # tells this channel's delivery tags from those of an earlier one of the partition
    channel: AbstractChannel
    tag: str


class AmqpSource:
    def __init__(self, config: AmqpSourceConfig) -> None:
        self.config = config
        self.connected = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._pending: list[RawMessage] = []
        self._wake = asyncio.Event()
        self._consumers: dict[int, _Consumer] = {}  # partition → its channel, while consumed
        self._partition_of: dict[int, int] = {}  # generation → partition
        self._generations = 0
        self.received = 0
        self.lost = asyncio.Event()  # the connection is gone: every partition with it
        self.channels_lost: set[int] = set()  # partitions whose channel the broker closed
        self._acking: set[asyncio.Future[None]] = set()

    # -- topology and consumers ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connects and declares, idempotently, the exchange, its binding to `amq.topic` and the queues."""
        connection = await aio_pika.connect(self.config.url)
        connection.close_callbacks.add(self._on_connection_closed)
        self._connection = connection  # type: ignore[assignment]
        channel = await connection.channel()
        try:
            exchange = await channel.declare_exchange(EXCHANGE, "x-consistent-hash", durable=True)
            for mqtt_filter in self.config.subscriptions:
                await exchange.bind("amq.topic", binding_key(mqtt_filter))
            for partition in range(self.config.partitions):
                queue = await channel.declare_queue(queue_name(partition), durable=True, arguments={
                    "x-single-active-consumer": True, "x-queue-type": self.config.queue_type})
                await queue.bind(exchange, "1")  # equal weights: an equal share of the hash ring each
        finally:
            await channel.close()
        self.connected.set()
        metrics.MQTT_CONNECTED.set(1)
        log.warning("amqp connected: %d partitions of exchange %s", self.config.partitions, EXCHANGE)

    def _on_connection_closed(self, *args: Any) -> None:
        self.connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        self._consumers.clear()
        self._pending.clear()  # unacknowledged: the broker redelivers them to whoever consumes next
        self.lost.set()
        self._wake.set()

    async def consume(self, partition: int) -> None:
        """Starts consuming `partition` on a channel of its own (its rule states already loaded)."""
        self.channels_lost.discard(partition)
        if partition in self._consumers or self._connection is None:
            return
        try:
            await self._consume(partition)
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
            raise SourceUnavailable(f"partition {partition}: {exc}") from exc

    async def _consume(self, partition: int) -> None:
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.config.prefetch)
        queue = await channel.get_queue(queue_name(partition), ensure=False)
        self._generations += 1
        generation = self._generations
        self._partition_of[generation] = partition

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._received(message, generation)

        tag = await queue.consume(on_message, no_ack=False)
        self._consumers[partition] = _Consumer(partition, generation, channel, tag)

        def on_channel_closed(*args: Any) -> None:
            # Closed by the broker (a consumer timeout, a channel error): the partition is no longer
            # consumed here; what was not acknowledged goes back to its queue.
            consumer = self._consumers.get(partition)
            if consumer is not None and consumer.generation == generation:
                del self._consumers[partition]
                self._drop_pending(generation)
                self.channels_lost.add(partition)
                log.warning("amqp channel of partition %d closed by the broker", partition)

        channel.close_callbacks.add(on_channel_closed)

    async def stop_consuming(self, partition: int) -> None:
        """Stops consuming `partition`: what was received of it and not committed is dropped here and
        goes back to the queue, in order, for the replica that consumes it next."""
        consumer = self._consumers.pop(partition, None)
        if consumer is None:
            return
        self._drop_pending(consumer.generation)
        with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError, ConnectionError):
            await consumer.channel.close()

    def _drop_pending(self, generation: int) -> None:
        self._pending = [m for m in self._pending if m.ack is None or m.ack.connection != generation]

    def consuming(self) -> set[int]:
        return set(self._consumers)

    def partition(self, message: RawMessage) -> int | None:
        return self._partition_of.get(message.ack.connection) if message.ack is not None else None

    def current(self, message: RawMessage) -> bool:
        """Whether `message` came on its partition's channel of now (not one given up since)."""
        if message.ack is None:
            return False
        consumer = self._consumers.get(self._partition_of.get(message.ack.connection, -1))
        return consumer is not None and consumer.generation == message.ack.connection

    def _received(self, message: AbstractIncomingMessage, generation: int) -> None:
        raw = RawMessage(mqtt_topic(message.routing_key or ""), message.body, datetime.now(UTC),
                         AckToken(generation, message.delivery_tag or 0, 1))
        self._pending.append(raw)
        self.received += 1
        if len(self._pending) == 1 or len(self._pending) >= self._wake_at:
            self._wake.set()

    _wake_at = 1

    # -- the Source protocol --------------------------------------------------------------------------

    def is_connected(self) -> bool:
        return self.connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        return self.connected.is_set()

    def pending_count(self) -> int:
        return len(self._pending)

    async def next_batch(self, max_size: int, max_age_s: float, interrupt: asyncio.Event) -> list[RawMessage]:
        self._wake_at = max_size
        while not self._pending and not interrupt.is_set():
            self._wake.clear()
            await wait_either(self._wake, interrupt, None)
        if not self._pending:
            return []
        deadline = self._pending[0].received_at.timestamp() + max_age_s
        while len(self._pending) < max_size and not interrupt.is_set():
            remaining = deadline - time.time()
            if remaining <= 0 or not self._pending:
                break
            self._wake.clear()
            await wait_either(self._wake, interrupt, remaining)
        batch = self._pending[:max_size]
        del self._pending[:max_size]
        metrics.MQTT_PENDING.set(len(self._pending))
        return batch

    def ack(self, messages: Iterable[RawMessage]) -> None:
        """Acknowledges committed messages: per channel, the highest delivery tag with `multiple` (batches
        commit in order, so every lower one is committed too). Those of a channel closed since (a partition
        given up) are skipped: the broker has requeued them, and the message key makes them no-ops."""
        highest: dict[int, int] = {}
        for message in messages:
            token = message.ack
            if token is not None and token.mid > highest.get(token.connection, 0):
                highest[token.connection] = token.mid
        by_generation = {c.generation: c for c in self._consumers.values()}
        for generation, tag in highest.items():
            consumer = by_generation.get(generation)
            if consumer is not None and not consumer.channel.is_closed:
                acking = asyncio.ensure_future(_ack(consumer.channel, tag))
                self._acking.add(acking)
                acking.add_done_callback(self._acking.discard)

    async def close(self) -> None:
        if self._acking:
            await asyncio.wait(set(self._acking), timeout=5)
        for partition in list(self._consumers):
            await self.stop_consuming(partition)
        if self._connection is not None:
            with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError, ConnectionError):
                await self._connection.close()
        self.connected.clear()
        metrics.MQTT_CONNECTED.set(0)


async def _ack(channel: AbstractChannel, tag: int) -> None:
    with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError, ConnectionError):
        underlying = await channel.get_underlay_channel()
        await underlying.basic_ack(tag, multiple=True)

