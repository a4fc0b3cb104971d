from __future__ import annotations

import pytest

from gateway.store.queries import parse_named_queries, query


def test_named_queries_are_split_and_comments_dropped() -> None:
    parsed = parse_named_queries("-- header\n-- name: a\n-- why\nSELECT 1;\n\n-- name: b\nSELECT\n  2;\n")
    assert parsed == {"a": "SELECT 1", "b": "SELECT\n  2"}


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_named_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_shipped_queries_load() -> None:
    assert query("insert_telemetry_from_staging").startswith("INSERT INTO telemetry")
