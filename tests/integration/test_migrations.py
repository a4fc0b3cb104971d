"""Migrations on a real PostgreSQL: idempotent, equal to schema.sql, and partition upkeep."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import psycopg

from gateway.embedded.postgres import Postgres
from gateway.settings import Settings
from gateway.store.migrate import available_migrations, maintain_partitions, migrate
from tests.support import scalar, sql


def test_migrate_twice_is_a_no_op(empty_database_url: str) -> None:
    first = migrate(empty_database_url)
    assert [m.version for m in first] == [m.version for m in available_migrations()]
    assert migrate(empty_database_url) == []
    assert scalar(empty_database_url, "SELECT count(*) FROM schema_migrations") == len(first)


def _schema_dump(postgres: Postgres, url: str) -> str:
    dump = subprocess.run(
        [str(postgres.bindir / "pg_dump"), "--schema-only", "--no-owner", "--exclude-table=schema_migrations", url],
        capture_output=True, text=True, check=True,
    ).stdout
    skipped = ("--", "SET ", "\\restrict", "\\unrestrict")
    lines = [line for line in dump.splitlines() if line and not line.startswith(skipped)
             and "pg_catalog.set_config" not in line]
    return re.sub(r"\n+", "\n", "\n".join(lines))


def test_migrations_produce_schema_sql(postgres: Postgres, empty_database_url: str, database_url: str) -> None:
    schema = resources.files("gateway.store").joinpath("schema.sql").read_text("utf-8")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(schema.encode())
    # database_url is the migrated template clone; drop its partitions so both have only the DDL
    with psycopg.connect(database_url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT inhrelid::regclass::text FROM pg_inherits "
                                    "WHERE inhparent = 'telemetry'::regclass AND inhrelid::regclass::text <> "
                                    "'telemetry_default'").fetchall():
            conn.execute(f"DROP TABLE {name}")
    assert _schema_dump(postgres, empty_database_url) == _schema_dump(postgres, database_url)


def _partitions(url: str) -> set[str]:
    return {r[0] for r in sql(url, "SELECT inhrelid::regclass::text FROM pg_inherits "
                                   "WHERE inhparent = 'telemetry'::regclass")}


def test_partitions_cover_the_accepted_window_and_expire(database_url: str) -> None:
    settings = Settings(max_past_s=2 * 86400, partitions_ahead_days=3, retention_days=30, _env_file=None)
    today = date(2027, 3, 10)
    with psycopg.connect(database_url, autocommit=True) as conn:
        maintain_partitions(conn, settings, today)
    names = _partitions(database_url)
    for offset in range(-3, 4):
        assert f"telemetry_p{(today + timedelta(days=offset)):%Y%m%d}" in names
    assert "telemetry_p20270314" not in names
    # Thirty days later the oldest of them are past retention and dropped.
    with psycopg.connect(database_url, autocommit=True) as conn:
        maintain_partitions(conn, settings, date(2027, 4, 11))
    names = _partitions(database_url)
    # 2027-04-11 minus 30 days of retention: partitions before 2027-03-12 go
    assert "telemetry_p20270311" not in names and "telemetry_p20270312" in names


def test_rows_in_the_default_partition_move_into_a_new_day_partition(database_url: str) -> None:
    day = datetime(2031, 5, 4, 12, tzinfo=UTC)
    sql(database_url, "INSERT INTO telemetry (time, device_id, message_key, received_at, profile) "
                      "VALUES (%s, 'T1', '\\x01', now(), 'truck')", (day,))
    assert scalar(database_url, "SELECT count(*) FROM ONLY telemetry_default") == 1
    created = scalar(database_url, "SELECT wastegate_ensure_telemetry_partitions(%s, %s)", (day.date(), day.date()))
    assert created == 1
    assert scalar(database_url, "SELECT count(*) FROM ONLY telemetry_default") == 0
    assert scalar(database_url, "SELECT count(*) FROM telemetry_p20310504") == 1
