"""The connection pool. Each connection gets the temporary staging tables the batch writer copies into."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from gateway.store.queries import query


async def _configure(conn: AsyncConnection) -> None:
    await conn.execute(query("create_telemetry_staging"))
    await conn.execute(query("create_devices_seen_staging"))
    await conn.commit()


async def open_pool(conninfo: str, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        conninfo, min_size=min_size, max_size=max_size, configure=_configure, open=False,
        kwargs={"application_name": "wastegate"},
    )
    await pool.open(wait=True, timeout=30)
    return pool
