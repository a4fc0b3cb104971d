"""The dead letter: every message that did not become a reading, with its reason. Nothing is dropped."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection

from gateway.events import Rejection, message_key
from gateway.store.queries import query

# What is kept of an oversized payload; its original size is stored beside it.
STORED_PAYLOAD_LIMIT = 64 * 1024


async def insert_rejections(conn: AsyncConnection, rejections: Sequence[Rejection]) -> None:
    if not rejections:
        return
    rows = [
        (
            r.message.received_at, r.message.topic, r.message.payload[:STORED_PAYLOAD_LIMIT],
            len(r.message.payload), r.reason, r.detail[:2000], r.profile, r.device_id,
            message_key(r.message.topic, r.message.payload),
        )
        for r in rejections
    ]
    async with conn.cursor() as cur:
        await cur.executemany(query("insert_rejected"), rows)
