"""What the pipeline needs of a source of messages. A source receives on its own (a network loop, a file),
hands messages over in batches, and is told which ones are committed: only those may be acknowledged to
whoever sent them, so a message is never lost between the broker and the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from gateway.events import RawMessage


class Source(Protocol):
    async def start(self) -> None:
        """Connects (or opens) and starts receiving."""

    def is_connected(self) -> bool:
        """For readiness: whether messages can arrive now."""

    async def next_batch(self, max_size: int, max_age_s: float, interrupt: asyncio.Event) -> list[RawMessage]:
        """Waits for a first message, then until `max_size` are pending or the first is `max_age_s` old.
        Returns at once, possibly empty, when `interrupt` is set."""

    def pending_count(self) -> int:
        """Received and not yet handed over."""

    def ack(self, messages: Iterable[RawMessage]) -> None:
        """These messages are committed: acknowledge them."""

    async def close(self) -> None:
        """Stops receiving; what was not acknowledged is redelivered by the sender."""


async def wait_either(event: asyncio.Event, stop: asyncio.Event, timeout: float | None) -> None:
    """Until `event` or `stop` is set, or `timeout` has passed: a source's wait for its next messages."""
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
