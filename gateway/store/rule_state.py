"""The rules' state per (rule, device), so a restart resumes pending durations and inside/outside sides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from gateway.store.queries import query


async def save_rule_states(conn: AsyncConnection, states: Mapping[tuple[str, str], Mapping[str, Any] | None],
                           partitions: Mapping[str, int] | None = None) -> None:
    """`partitions`: the RabbitMQ partition of each device whose readings the batch holds, noted with its
    states (subjects are devices) for the replica that gains the partition next."""
    partitions = partitions or {}
    upserts = [(rule_id, subject, Jsonb(dict(state)), partitions.get(subject))
               for (rule_id, subject), state in sorted(states.items()) if state is not None]
    deletes = [(rule_id, subject) for (rule_id, subject), state in sorted(states.items()) if state is None]
    async with conn.cursor() as cur:
        if upserts:
            await cur.executemany(query("upsert_rule_state"), upserts)
        if deletes:
            await cur.executemany(query("delete_rule_state"), deletes)


async def load_rule_states(conn: AsyncConnection) -> list[tuple[str, str, dict[str, Any]]]:
    async with conn.cursor() as cur:
        await cur.execute(query("all_rule_state"))
        return [(rule_id, subject, state) for rule_id, subject, state in await cur.fetchall()]


async def load_rule_states_of(conn: AsyncConnection, rule_ids: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The committed states of these rules (by whichever replica): what a replica gaining a lease starts from."""
    async with conn.cursor() as cur:
        await cur.execute(query("rule_states_of"), (list(rule_ids),))
        return [(rule_id, subject, state) for rule_id, subject, state in await cur.fetchall()]


async def load_rule_states_of_partition(conn: AsyncConnection, partition: int) -> list[tuple[str, str, dict[str, Any]]]:
    async with conn.cursor() as cur:
        await cur.execute(query("rule_states_of_partition"), (partition,))
        return [(rule_id, subject, state) for rule_id, subject, state in await cur.fetchall()]

