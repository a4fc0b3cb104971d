"""The dead letter: every message that did not become a reading, with its reason. Nothing is dropped.

Rows are listed and selected for replay here; the replay itself (decoding again) is `gateway/replay.py`,
since the store imports nothing of the stages above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
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


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which dead-letter rows a command is about; every part is optional and they all must hold.

    `topic` is an MQTT topic filter (`+` one level, `#` the rest) or, without wildcards, a prefix of the
    topic (`containers/` or `v3/app@tenant/devices/eui-1`). `since` is inclusive, `until` exclusive, both
    on the time the gateway received the message."""

    ids: Sequence[int] = ()
    reasons: Sequence[str] = ()
    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.topic is not None:
            topic_condition(self.topic)  # refused here, with the reason, rather than as a SQL error later
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})")

    def params(self) -> dict[str, Any]:
        prefix, pattern = topic_condition(self.topic) if self.topic is not None else (None, None)
        return {
            "ids": list(self.ids) or None, "reasons": list(self.reasons) or None, "topic_prefix": prefix,
            "topic_regex": pattern, "since": self.since, "until": self.until,
        }


def topic_condition(topic_filter: str) -> tuple[str | None, str | None]:
    """(prefix, None) for a plain prefix, (None, PostgreSQL regular expression) for an MQTT filter."""
    if not topic_filter:
        raise ValueError("the topic filter is empty")
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter, None
    levels = topic_filter.split("/")
    parts: list[str] = []
    for index, level in enumerate(levels):
        if level == "#":
            if index != len(levels) - 1:
                raise ValueError(f"'#' must be the last level of the topic filter {topic_filter!r}")
            # `a/#` also matches `a` itself (MQTT 3.1.1 §4.7.1.2), hence the optional separator.
            return None, "^" + "".join(parts) + ("(/.*)?$" if parts else ".*$")
        if level == "+":
            part = "[^/]*"
        elif "+" in level or "#" in level:
            raise ValueError(f"'+' and '#' must stand alone in their level of the topic filter {topic_filter!r}")
        else:
            part = _regex_literal(level)
        parts.append(part if index == 0 else "/" + part)
    return None, "^" + "".join(parts) + "$"


def _regex_literal(text: str) -> str:
    # In PostgreSQL's regular expressions a backslash before a non-alphanumeric character makes it literal;
    # before a letter or digit it would start an escape, so those stay bare.
    return "".join(ch if ch.isalnum() or ch == "_" else "\\" + ch for ch in text)


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    id: int
    received_at: datetime
    reason: str
    topic: str
    detail: str
    profile: str | None
    device_id: str | None
    payload_size: int
    replayed_at: datetime | None
    replay_outcome: str | None

    def as_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        for name in ("received_at", "replayed_at"):
            if out[name] is not None:
                out[name] = out[name].isoformat()
        return out


def list_dead_letter(conn: psycopg.Connection[Any], selection: DeadLetterFilter, limit: int,
                     include_replayed: bool = False) -> list[DeadLetterEntry]:
    """Newest first. Rows a replay stored (or found to be no reading) have left the dead letter and are
    listed only with `include_replayed`."""
    rows = conn.execute(query("dead_letter_list"),
                        {**selection.params(), "limit": limit, "include_replayed": include_replayed})
    return [DeadLetterEntry(*row) for row in rows.fetchall()]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A dead-letter row as a replay needs it."""

    id: int
    received_at: datetime
    topic: str
    payload: bytes
    payload_size: int
    reason: str

    @property
    def truncated(self) -> bool:
        return self.payload_size > len(self.payload)


async def lock_for_replay(conn: AsyncConnection, selection: DeadLetterFilter, after_id: int,
                          limit: int) -> list[StoredMessage]:
    """The next rows still in the dead letter, oldest first, locked until the caller's transaction ends.
    Rows another replay holds are skipped, so two replays at once never take the same message."""
    async with conn.cursor() as cur:
        await cur.execute(query("dead_letter_for_replay"), {**selection.params(), "after_id": after_id, "limit": limit})
        return [StoredMessage(row[0], row[1], row[2], bytes(row[3]), row[4], row[5]) for row in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class ReplayMark:
    """What a replay did with one row: `stored` or `not_reading` (it leaves the dead letter), or
    `rejected` with the reason it failed this time."""

    id: int
    outcome: str
    rejection: Rejection | None = None


async def record_replays(conn: AsyncConnection, marks: Sequence[ReplayMark], at: datetime) -> None:
    resolved = [{"id": m.id, "at": at, "outcome": m.outcome} for m in marks if m.rejection is None]
    failed = [
        {"id": m.id, "at": at, "reason": m.rejection.reason, "detail": m.rejection.detail[:2000],
         "profile": m.rejection.profile, "device_id": m.rejection.device_id}
        for m in marks if m.rejection is not None
    ]
    async with conn.cursor() as cur:
        if resolved:
            await cur.executemany(query("dead_letter_replayed"), resolved)
        if failed:
            await cur.executemany(query("dead_letter_rejected_again"), failed)
