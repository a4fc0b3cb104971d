"""`wastegate deadletter list` and `replay` against a real PostgreSQL (and, for how rows get there, a real
Mosquitto and gateway): filters, replay after registering a device, and exactly once."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.events import RawMessage, Rejection
from gateway.settings import Settings
from gateway.store.dead_letter import insert_rejections
from tests.support import REPO, publish, running_gateway, scalar, sql, wait_until

runner = CliRunner()


def env(url: str) -> dict[str, str]:
    return {"WASTEGATE_DATABASE_URL": url, "WASTEGATE_PROFILES_DIR": str(REPO / "device_profiles")}


def wastegate(url: str, *args: str) -> Any:
    return runner.invoke(app, list(args), env=env(url))


def listed(url: str, *args: str) -> list[dict[str, Any]]:
    result = wastegate(url, "deadletter", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def dead_letter(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT id, reason, topic, replay_outcome FROM rejected_messages ORDER BY id")


def test_unknown_device_replayed_after_registration_exactly_once(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url
    now = datetime.now(UTC)
    fresh = json.dumps({"ts": now.isoformat(), "distance_mm": 400, "battery_pct": 87})
    month_old = json.dumps({"ts": (now - timedelta(days=30)).isoformat(), "distance_mm": 900})
    with running_gateway(settings):
        publish(settings.mqtt_url, [
            ("containers/C-9/telemetry", fresh),        # C-9 not registered yet
            ("containers/C-8/telemetry", month_old),    # nor C-8, whose reading is also too old
            ("containers/C-7/telemetry", "{not json"),
            ("trucks/T1/telemetry", json.dumps({"ts": "yesterday", "lat": 41.4, "lon": 2.1})),
        ])
        wait_until(lambda: scalar(url, "SELECT count(*) FROM rejected_messages") == 4)
    rows = dead_letter(url)
    reasons = {topic: reason for _, reason, topic, _ in rows}
    assert reasons == {"containers/C-9/telemetry": "unknown_device", "containers/C-8/telemetry": "unknown_device",
                       "containers/C-7/telemetry": "invalid_json", "trucks/T1/telemetry": "bad_timestamp"}
    ids = {topic: row_id for row_id, _, topic, _ in rows}

    # list: every row, newest first; each filter narrows it
    everything = listed(url)
    assert [e["id"] for e in everything] == sorted(ids.values(), reverse=True)
    assert set(everything[0]) >= {"id", "received_at", "reason", "topic", "detail"}
    assert {e["topic"] for e in listed(url, "--reason", "unknown_device")} == {"containers/C-9/telemetry",
                                                                               "containers/C-8/telemetry"}
    assert {e["reason"] for e in listed(url, "--reason", "invalid_json", "--reason", "bad_timestamp")} == {
        "invalid_json", "bad_timestamp"}
    assert [e["topic"] for e in listed(url, "--topic", "trucks/")] == ["trucks/T1/telemetry"]
    assert len(listed(url, "--topic", "containers/+/telemetry")) == 3
    assert len(listed(url, "--topic", "containers/#")) == 3
    assert listed(url, "--topic", "containers/+") == []  # a filter matches whole levels, a prefix does not
    assert [e["topic"] for e in listed(url, "--topic", "containers/C-7")] == ["containers/C-7/telemetry"]
    assert len(listed(url, "--since", "1h")) == 4
    assert listed(url, "--until", "1h") == []
    assert len(listed(url, "--since", (now - timedelta(minutes=5)).isoformat(), "--until", "2099-01-01")) == 4
    assert len(listed(url, "--limit", "2")) == 2

    # Registering the devices is what an operator does before replaying.
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,profile,bin_depth_mm\nC-9,container,1000\nC-8,container,1000\n")
    assert wastegate(url, "devices", "import", str(devices)).exit_code == 0

    dry = wastegate(url, "deadletter", "replay", "--reason", "unknown_device", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing written" in dry.output and "1 stored" in dry.output
    assert scalar(url, "SELECT count(*) FROM telemetry") == 0
    assert dead_letter(url) == rows

    first = wastegate(url, "deadletter", "replay", "--reason", "unknown_device")
    assert first.exit_code == 0, first.output
    assert "2 messages replayed: 1 stored, 0 no reading, 1 rejected again" in first.output
    assert f"#{ids['containers/C-8/telemetry']} time_too_old" in first.output
    telemetry = sql(url, "SELECT device_id, distance_mm, fill_pct, battery_pct FROM telemetry")
    assert telemetry == [("C-9", 400.0, 60.0, 87.0)]
    after_first = dead_letter(url)
    # No new row: the stored message is marked, the one that failed again keeps its row with the new reason.
    assert [(r[0], r[1], r[3]) for r in after_first] == [
        (ids["containers/C-9/telemetry"], "unknown_device", "stored"),
        (ids["containers/C-8/telemetry"], "time_too_old", "rejected"),
        (ids["containers/C-7/telemetry"], "invalid_json", None),
        (ids["trucks/T1/telemetry"], "bad_timestamp", None),
    ]
    # The stored one has left the dead letter; it is still there for whoever asks.
    assert ids["containers/C-9/telemetry"] not in {e["id"] for e in listed(url)}
    replayed = [e for e in listed(url, "--include-replayed") if e["id"] == ids["containers/C-9/telemetry"]]
    assert replayed[0]["replay_outcome"] == "stored" and replayed[0]["replayed_at"]

    again = wastegate(url, "deadletter", "replay", "--all")
    assert again.exit_code == 0, again.output
    assert "3 messages replayed: 0 stored, 0 no reading, 3 rejected again" in again.output
    assert scalar(url, "SELECT count(*) FROM telemetry") == 1
    assert [(r[0], r[1]) for r in dead_letter(url)] == [(r[0], r[1]) for r in after_first]
    by_id = wastegate(url, "deadletter", "replay", "--id", str(ids["containers/C-9/telemetry"]))
    assert by_id.exit_code == 0 and "nothing to replay" in by_id.output
    assert scalar(url, "SELECT count(*) FROM telemetry") == 1


def test_a_replay_interrupted_before_its_outcomes_stores_nothing_twice(database_url: str) -> None:
    _register(database_url, "C-1")
    now = datetime.now(UTC)
    _dead_letter_rows(database_url, [Rejection(
        RawMessage("containers/C-1/telemetry", json.dumps({"ts": now.isoformat(), "fill_pct": 40}).encode(), now),
        "unknown_device", "'C-1' is not registered")])
    assert wastegate(database_url, "deadletter", "replay", "--all").exit_code == 0
    # As if it had stopped after committing the readings and before recording the outcome.
    sql(database_url, "UPDATE rejected_messages SET replay_outcome = NULL, replayed_at = NULL")
    again = wastegate(database_url, "deadletter", "replay", "--all")
    assert again.exit_code == 0, again.output
    assert "1 stored" in again.output and "1 reading went to telemetry (1 of them already there)" in again.output
    assert scalar(database_url, "SELECT count(*) FROM telemetry") == 1
    assert sql(database_url, "SELECT replay_outcome FROM rejected_messages") == [("stored",)]


def test_a_replayed_uplink_leaves_the_frame_counter_alone(database_url: str) -> None:
    case = REPO / "device_profiles/em310-udl-tts/testcases/thingsboard_tts_community"
    topic = json.loads((case / "expected.json").read_text())["topic"]
    envelope = json.loads((case / "input.json").read_text())
    now = datetime.now(UTC)
    envelope["received_at"] = now.isoformat()
    envelope["uplink_message"]["f_cnt"] = 5
    device_id = envelope["end_device_ids"]["device_id"]
    _register(database_url, device_id, "em310-udl-tts", bin_depth_mm=3000)
    sql(database_url, "UPDATE devices SET last_f_cnt = 900 WHERE device_id = %s", (device_id,))
    _dead_letter_rows(database_url, [Rejection(RawMessage(topic, json.dumps(envelope).encode(), now), "store_error",
                                               "the database refused this one")])
    result = wastegate(database_url, "deadletter", "replay", "--reason", "store_error")
    assert result.exit_code == 0 and "1 stored" in result.output, result.output
    extra = scalar(database_url, "SELECT extra FROM telemetry")
    assert extra["f_cnt"] == 5 and "frames_lost" not in extra
    assert sql(database_url, "SELECT last_f_cnt, uplink_frames_lost FROM devices") == [(900, 0)]


def test_a_truncated_payload_is_not_replayed(database_url: str) -> None:
    now = datetime.now(UTC)
    big = json.dumps({"ts": now.isoformat(), "pad": "x" * 70_000}).encode()
    _dead_letter_rows(database_url, [Rejection(RawMessage("trucks/T1/telemetry", big, now), "payload_too_large",
                                               f"{len(big)} bytes > 65536")])
    result = wastegate(database_url, "deadletter", "replay", "--all")
    assert result.exit_code == 0, result.output
    assert "1 skipped" in result.output and f"only 65536 of its {len(big)} bytes were kept" in result.output
    assert scalar(database_url, "SELECT count(*) FROM telemetry") == 0
    assert sql(database_url, "SELECT reason, replay_outcome FROM rejected_messages") == [("payload_too_large", None)]


@pytest.mark.parametrize(("args", "message"), [
    (["list", "--since", "last tuesday"], "'last tuesday' is not a time"),
    (["list", "--until", "2026-13-01"], "'2026-13-01' is not a time"),
    (["replay", "--since", "soon"], "'soon' is not a time"),
    (["list", "--since", "2026-02-01", "--until", "2026-01-01"], "must be before until"),
    (["list", "--topic", "containers/#/telemetry"], "'#' must be the last level"),
    (["list", "--topic", "containers/C+/telemetry"], "must stand alone in their level"),
    (["list", "--reason", "unkown_device"], "unknown reason 'unkown_device'"),
    (["list", "--limit", "0"], "--limit"),
    (["replay"], "say which messages"),
])
def test_bad_filters_are_refused_clearly(database_url: str, args: list[str], message: str) -> None:
    result = wastegate(database_url, "deadletter", *args)
    assert result.exit_code == 2, result.output
    # Rich draws the error in a box that wraps at the terminal's width.
    assert message in re.sub(r"[\s│╭╮╰╯─]+", " ", result.output), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unreachable_database_is_said_so(tmp_path: Path) -> None:
    result = wastegate("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "deadletter", "list")
    assert result.exit_code == 1
    assert "cannot reach the database" in result.output


def test_two_replays_never_take_the_same_row_and_the_gateway_is_not_held_up(database_url: str) -> None:
    from gateway.store.dead_letter import DeadLetterFilter, lock_for_replay

    now = datetime.now(UTC)
    message = RawMessage("trucks/T1/telemetry", b"{nope", now)
    _dead_letter_rows(database_url, [Rejection(message, "invalid_json", "bad")])

    async def race() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(database_url) as first, \
                await psycopg.AsyncConnection.connect(database_url) as second:
            async with first.transaction():
                taken = await lock_for_replay(first, DeadLetterFilter(), 0, 10)
                async with second.transaction():
                    await second.execute("SET LOCAL statement_timeout = '2s'")
                    skipped = await lock_for_replay(second, DeadLetterFilter(), 0, 10)
                    # The live gateway redelivering the same message meanwhile: not blocked by the lock.
                    await insert_rejections(second, [Rejection(message, "invalid_json", "bad")])
            return len(taken), len(skipped)

    assert asyncio.run(race()) == (1, 0)
    assert scalar(database_url, "SELECT count(*) FROM rejected_messages") == 1


TOPICS = ["a", "a/b", "a/b/c", "ab/c", "x.y/z", "xzy/z", "v3/app@t/devices/d(1)/up", "v3/app/devices/d1/up"]


@pytest.mark.parametrize(("topic_filter", "matched"), [
    ("#", TOPICS),
    ("a/#", ["a", "a/b", "a/b/c"]),
    ("a/+", ["a/b"]),
    ("+/+", ["a/b", "ab/c", "x.y/z", "xzy/z"]),
    ("x.y/+", ["x.y/z"]),  # a dot is a dot, not any character
    ("v3/+/devices/+/up", ["v3/app@t/devices/d(1)/up", "v3/app/devices/d1/up"]),
    ("v3/app@t/devices/d(1)/#", ["v3/app@t/devices/d(1)/up"]),
    ("a/b", ["a/b", "a/b/c"]),  # no wildcard: a prefix
    ("a", ["a", "a/b", "a/b/c", "ab/c"]),
])
def test_topic_filters_on_postgresql(database_url: str, topic_filter: str, matched: list[str]) -> None:
    from gateway.store.dead_letter import DeadLetterFilter, list_dead_letter

    now = datetime.now(UTC)
    _dead_letter_rows(database_url, [Rejection(RawMessage(t, b"x", now), "invalid_json", "") for t in TOPICS])
    with psycopg.connect(database_url) as conn:
        found = list_dead_letter(conn, DeadLetterFilter(topic=topic_filter), 100)
    assert sorted(e.topic for e in found) == sorted(matched)


@pytest.mark.parametrize("command", [["deadletter"], ["deadletter", "list"], ["deadletter", "replay"]])
def test_the_commands_have_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, result.output


def _register(url: str, device_id: str, profile: str = "container", **attributes: Any) -> None:
    from types import MappingProxyType

    from gateway.devices import Device
    from gateway.store.devices import upsert_devices

    upsert_devices(url, [Device(device_id, profile, "container", attributes=MappingProxyType(attributes))])


def _dead_letter_rows(url: str, rejections: list[Rejection]) -> None:
    async def insert() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await insert_rejections(conn, rejections)

    asyncio.run(insert())

