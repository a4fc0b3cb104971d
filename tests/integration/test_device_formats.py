"""Every golden case of the network-server and OwnTracks profiles, published through a real Mosquitto:
readings end as telemetry rows with the right device id, time and values; bad envelopes in the dead letter
with their reason; joins, acks and waypoints counted, not stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from gateway.devices import Device
from gateway.events import CANONICAL_FIELDS, message_key
from gateway.ingest.testcases import discover, payload_of
from gateway.profiles.loader import load_profiles
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from tests.support import REPO, publish, running_gateway, scalar, sql, wait_until

PROFILES_DIR = REPO / "device_profiles"
PROFILES = load_profiles(PROFILES_DIR)
NATIVE = {"truck", "container"}  # covered by test_end_to_end.py
BY_PROFILE: dict[str, list[Path]] = {}
for _case in discover(PROFILES_DIR):
    BY_PROFILE.setdefault(_case.parent.parent.name, []).append(_case)


@pytest.mark.parametrize("profile_name", sorted(set(BY_PROFILE) - NATIVE))
def test_cases_through_mosquitto_and_postgres(settings: Settings, profile_name: str) -> None:
    # The fixtures are real captures from 2015–2023: widen the accepted device-clock window.
    settings = settings.model_copy(update={"max_past_s": 20 * 365 * 86400})
    profile = PROFILES.by_name[profile_name]
    cases = [(case, json.loads((case / "expected.json").read_text())) for case in BY_PROFILE[profile_name]]
    devices = {}
    for _, expected in cases:
        route = PROFILES.route(expected["topic"])
        assert route is not None
        if "device" in expected:
            devices[route.device_id] = Device(route.device_id, profile_name, profile.config.kind,
                                              attributes=MappingProxyType(expected["device"]))
    upsert_devices(settings.database_url, list(devices.values()))
    # A reading without a device time takes the time it is received: `now` in the case, not here.
    expected_rows = [(message_key(e["topic"], payload_of(case), index),
                      row if row["time"] != e["now"] else {k: v for k, v in row.items() if k != "time"})
                     for case, e in cases for index, row in enumerate(e.get("readings", []))]
    expected_rejections = sorted(e["rejected"] for _, e in cases if "rejected" in e)
    with running_gateway(settings):
        publish(settings.mqtt_url, [(e["topic"], payload_of(case)) for case, e in cases])
        # Two cases with the very same message are one row: that is the idempotent store at work.
        distinct = len({key for key, _ in expected_rows})
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == distinct
                   and scalar(settings.database_url, "SELECT count(*) FROM rejected_messages")
                   == len(expected_rejections))
    rejected = [r[0] for r in sql(settings.database_url, "SELECT reason FROM rejected_messages ORDER BY reason")]
    assert rejected == expected_rejections
    columns = ", ".join(CANONICAL_FIELDS)
    for key, row in expected_rows:
        stored = sql(settings.database_url,
                     f"SELECT device_id, time, {columns}, extra FROM telemetry WHERE message_key = %s", (key,))
        assert len(stored) == 1, row
        values = dict(zip(["device_id", "time", *CANONICAL_FIELDS, "extra"], stored[0], strict=True))
        assert values["device_id"] == row["device_id"]
        if "time" in row:
            assert values["time"] == datetime.fromisoformat(row["time"])
        for name in CANONICAL_FIELDS:
            assert values[name] == row.get(name), (name, row)
        # The cases of one device follow each other here, so their frame counters jump: see the test below.
        stored_extra = {k: v for k, v in (values["extra"] or {}).items() if k != "frames_lost"}
        assert stored_extra == row.get("extra", {})


def test_lost_uplinks_are_counted_per_device(settings: Settings) -> None:
    case = REPO / "device_profiles/em310-udl-chirpstack/testcases/thingsboard_real_envelope"
    envelope = json.loads((case / "input.json").read_text())
    topic = json.loads((case / "expected.json").read_text())["topic"]
    upsert_devices(settings.database_url, [Device("1000000000000001", "em310-udl-chirpstack", "container",
                                                  attributes=MappingProxyType({"bin_depth_mm": 3000}))])
    start = datetime.now(UTC) - timedelta(minutes=10)
    messages = [(topic, json.dumps(dict(envelope, fCnt=f_cnt, time=(start + timedelta(minutes=i)).isoformat())))
                for i, f_cnt in enumerate([7, 8, 11, 12, 16])]
    with running_gateway(settings):
        publish(settings.mqtt_url, messages)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 5)
    assert sql(settings.database_url, "SELECT uplink_frames_lost, last_f_cnt FROM devices") == [(5, 16)]
    lost = sql(settings.database_url, "SELECT (extra->>'f_cnt')::int, (extra->>'frames_lost')::int FROM telemetry "
                                      "WHERE extra ? 'frames_lost' ORDER BY time")
    assert lost == [(11, 2), (16, 3)]
