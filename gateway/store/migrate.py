"""Applies the numbered migrations in `migrations/` once each, under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import psycopg

from gateway.settings import Settings
from gateway.store.queries import query

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 727_001  # any constant shared by every replica
MAX_LOOKBACK_DAYS = 35


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("gateway.store").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 0001, 0002, … without gaps; found {versions}")
    return found


def migrate(conninfo: str) -> list[Migration]:
    """Applies what is missing and returns it (empty when the database is up to date)."""
    applied_now: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in available_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied_now.append(migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def apply_storage_policies(conninfo: str, settings: Settings, today: date | None = None) -> str:
    """Partitions ahead and retention (plain PostgreSQL) or the hypertable's policies (TimescaleDB)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        hypertable = conn.execute(query("is_hypertable")).fetchone()
        if hypertable and hypertable[0]:
            conn.execute(query("timescale_chunk_interval"), {"interval": settings.timescale_chunk_interval})
            conn.execute(query("timescale_enable_compression"))
            conn.execute(query("timescale_compression_policy"), {"compress_after": settings.timescale_compress_after})
            if settings.retention_days:
                conn.execute(query("timescale_retention_policy"), {"drop_after": f"{settings.retention_days} days"})
            else:
                conn.execute(query("timescale_remove_retention_policy"))
            return "timescaledb"
        maintain_partitions(conn, settings, today)
        return "partitioned"


def maintain_partitions(conn: psycopg.Connection, settings: Settings, today: date | None = None) -> int:
    """Creates the day partitions every accepted reading can fall into, and drops expired ones."""
    today = today or datetime.now(UTC).date()
    # Readings older than this (a long backfill) land in the default partition, which is still queried.
    lookback = min(timedelta(seconds=settings.max_past_s), timedelta(days=MAX_LOOKBACK_DAYS))
    first_day = today - lookback - timedelta(days=1)
    last_day = today + timedelta(days=settings.partitions_ahead_days)
    row = conn.execute(query("ensure_partitions"), {"first_day": first_day, "last_day": last_day}).fetchone()
    if settings.retention_days:
        conn.execute(query("drop_partitions"), {"before_day": today - timedelta(days=settings.retention_days)})
    return int(row[0]) if row else 0
