"""Console accounts and sign-in sessions (tables `users`, `console_sessions`). Passwords arrive here
already hashed and session tokens as their digest: the store never sees a secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection

from gateway.store.queries import query


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    password_hash: str
    role: str
    language: str | None
    disabled: bool
    jurisdiction: str = ""


def upsert_user(conninfo: str, name: str, password_hash: str, role: str, language: str | None,
                jurisdiction: str = "") -> bool:
    """Creates the user, or replaces its password, role, language and municipality; True when it was created."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        row = conn.execute(query("insert_user"), {"name": name, "password_hash": password_hash, "role": role,
                                                  "language": language, "jurisdiction": jurisdiction}).fetchone()
    assert row is not None
    return bool(row[1])


async def user_by_name(conn: AsyncConnection, name: str) -> User | None:
    async with conn.cursor() as cur:
        await cur.execute(query("user_by_name"), {"name": name})
        row = await cur.fetchone()
    return User(*row) if row else None


async def create_session(conn: AsyncConnection, token_hash: bytes, user_id: int, csrf_token: str,
                         expires_at: datetime) -> None:
    await conn.execute(query("insert_console_session"), {"token_hash": token_hash, "user_id": user_id,
                                                         "csrf_token": csrf_token, "expires_at": expires_at})


async def session_user(conn: AsyncConnection, token_hash: bytes, now: datetime) -> tuple[User, str] | None:
    async with conn.cursor() as cur:
        await cur.execute(query("console_session_user"), {"token_hash": token_hash, "now": now})
        row: Any = await cur.fetchone()
    if row is None:
        return None
    return User(row[0], row[1], row[2], row[3], row[4], row[5], str(row[7])), str(row[6])


async def end_session(conn: AsyncConnection, token_hash: bytes, now: datetime) -> None:
    await conn.execute(query("delete_console_session"), {"token_hash": token_hash})
    await conn.execute(query("delete_expired_console_sessions"), {"now": now})


async def set_language(conn: AsyncConnection, user_id: int, language: str | None) -> None:
    await conn.execute(query("set_user_language"), {"id": user_id, "language": language})
