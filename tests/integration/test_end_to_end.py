"""End to end on a real Mosquitto and PostgreSQL: MQTT message in, telemetry row or dead letter out."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.device_import import read_devices
from gateway.embedded.mosquitto import Mosquitto
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from tests.support import publish, running_gateway, scalar, sql, wait_until

DATA = Path(__file__).parent / "data"
KINDS = {"truck": "truck", "container": "container"}


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def import_test_devices(database_url: str) -> None:
    upsert_devices(database_url, read_devices(DATA / "devices.csv", KINDS))


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_pub_truck_message_becomes_one_canonical_row(settings: Settings, broker: Mosquitto) -> None:
    payload = {"ts": "2026-11-23T08:15:02Z", "lat": 41.387, "lon": 2.17, "speed_kmh": 23.5, "heading_deg": 270,
               "ignition": True, "event": "bin_lift", "rfid": "E200341201", "weight_kg": 11.2}
    payload["ts"] = now_iso(-5)
    with running_gateway(settings):
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", "trucks/T1/telemetry",
                        "-m", json.dumps(payload)], check=True, timeout=10)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 1)
    row = sql(settings.database_url,
              "SELECT device_id, time, lat, lon, speed_kmh, heading_deg, event, rfid, weight_kg, extra, profile"
              " FROM telemetry")[0]
    assert row[0] == "T1"
    assert row[1] == datetime.fromisoformat(str(payload["ts"]))
    assert row[2:9] == (41.387, 2.17, 23.5, 270.0, "bin_lift", "E200341201", 11.2)
    assert row[9] == {"ignition": True}
    assert row[10] == "truck"
    # The truck profile accepts unknown devices: T1 is now registered, with when it was last heard from.
    device = sql(settings.database_url, "SELECT profile, kind, first_seen, last_seen FROM devices WHERE device_id='T1'")
    assert device[0][0:2] == ("truck", "truck") and device[0][3] is not None


def test_same_message_delivered_twice_is_one_row(settings: Settings) -> None:
    message = ("trucks/T2/telemetry", json.dumps({"ts": now_iso(-1), "lat": 41.4, "lon": 2.18}))
    other = ("trucks/T2/telemetry", json.dumps({"ts": now_iso(), "lat": 41.41, "lon": 2.19}))
    with running_gateway(settings):
        publish(settings.mqtt_url, [message, message, other])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 2)
        # and once more after it has been committed
        publish(settings.mqtt_url, [message])
        time.sleep(0.5)
    assert scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 2


def test_container_distance_becomes_fill_level_with_the_device_bin_depth(settings: Settings) -> None:
    import_test_devices(settings.database_url)
    # C-0001: bin 1200 mm deep, sensor 100 mm above the rim: 400 mm to the waste is (1200-300)/1200 = 75 %
    message = ("containers/C-0001/telemetry",
               json.dumps({"ts": int(time.time() * 1000), "distance_mm": 400, "temperature_c": 18.5,
                           "battery_pct": 87, "tilted": False}))
    with running_gateway(settings):
        publish(settings.mqtt_url, [message])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 1)
    row = sql(settings.database_url, "SELECT fill_pct, distance_mm, temperature_c, battery_pct, tilted FROM telemetry")
    assert row[0] == (75.0, 400.0, 18.5, 87.0, False)


def test_extra_values_json_cannot_carry_exactly_still_store(settings: Settings) -> None:
    huge = 123456789012345678901234567890  # beyond 64 bits: the fast JSON encoder refuses it
    fix = '{"ts": "TS", "lat": 41.4, "lon": 2.18, "ignition": VALUE}'
    messages = [("trucks/T9/telemetry", fix.replace("TS", now_iso(-2)).replace("VALUE", str(huge))),
                ("trucks/T9/telemetry", fix.replace("TS", now_iso(-1)).replace("VALUE", "NaN"))]
    with running_gateway(settings):
        publish(settings.mqtt_url, messages)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 2)
    extras = [row[0] for row in sql(settings.database_url, "SELECT extra FROM telemetry ORDER BY time")]
    assert extras == [{"ignition": huge}, {"ignition": None}]  # JSON has no NaN: stored as null
    assert scalar(settings.database_url, "SELECT count(*) FROM rejected_messages") == 0


BAD_INPUT = [
    ("invalid_json", "trucks/T3/telemetry", b'{"ts": "2026-11-23T08:00:00Z", "lat": '),
    ("invalid_encoding", "trucks/T3/telemetry", b'{"ts": "\xff\xfe"}'),
    ("payload_mismatch", "trucks/T3/telemetry", json.dumps({"ts": "NOW", "lat": "north", "lon": 2.1}).encode()),
    ("no_profile", "bins/B1/status", b'{"ts": 1}'),
    ("unknown_device", "containers/C-9999/telemetry", json.dumps({"ts": "NOW", "fill_pct": 40}).encode()),
    ("payload_too_large", "trucks/T3/telemetry", b'{"pad": "' + b"x" * 70_000 + b'"}'),
    ("time_in_future", "trucks/T3/telemetry", json.dumps({"ts": "FUTURE", "lat": 41.4, "lon": 2.1}).encode()),
    ("time_too_old", "trucks/T3/telemetry",
     json.dumps({"ts": "2020-01-01T00:00:00Z", "lat": 41.4, "lon": 2.1}).encode()),
    ("coordinates_out_of_range", "trucks/T3/telemetry", json.dumps({"ts": "NOW", "lat": 141.4, "lon": 2.1}).encode()),
    ("no_gps_fix", "trucks/T3/telemetry", json.dumps({"ts": "NOW", "lat": 0, "lon": 0, "speed_kmh": 0}).encode()),
    ("bad_timestamp", "trucks/T3/telemetry", json.dumps({"ts": "yesterday", "lat": 41.4, "lon": 2.1}).encode()),
]


def _materialize(payload: bytes) -> bytes:
    return payload.replace(b'"NOW"', json.dumps(now_iso(-1)).encode()).replace(
        b'"FUTURE"', json.dumps(now_iso(3 * 3600)).encode())


def test_every_bad_input_lands_in_the_dead_letter_with_its_reason(settings: Settings) -> None:
    settings = settings.model_copy(update={"mqtt_extra_subscriptions": ["bins/#"]})
    good = ("trucks/T3/telemetry", json.dumps({"ts": now_iso(), "lat": 41.4, "lon": 2.1}))
    messages = [(topic, _materialize(payload)) for _, topic, payload in BAD_INPUT]
    with running_gateway(settings):
        publish(settings.mqtt_url, [*messages, good])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM rejected_messages") == len(BAD_INPUT))
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 1)
    rows = sql(settings.database_url,
               "SELECT reason, topic, payload, payload_size, detail FROM rejected_messages ORDER BY id")
    assert [r[0] for r in rows] == [reason for reason, _, _ in BAD_INPUT]
    assert len({r[0] for r in rows}) == len(BAD_INPUT)  # every case has its own reason
    for (reason, topic, payload, size, detail), (expected_topic, sent) in zip(rows, messages, strict=True):
        assert topic == expected_topic
        assert size == len(sent)
        assert bytes(payload) == sent[: 64 * 1024], reason
        assert detail, f"{reason} has no detail"


def test_fiware_export_of_stored_state(settings: Settings) -> None:
    import_test_devices(settings.database_url)
    messages = [
        ("containers/C-0001/telemetry", json.dumps({"ts": now_iso(-60), "distance_mm": 400, "temperature_c": 71.0})),
        ("trucks/T9/telemetry", json.dumps({"ts": now_iso(-30), "lat": 41.39, "lon": 2.16, "speed_kmh": 12.0})),
    ]
    with running_gateway(settings):
        publish(settings.mqtt_url, messages)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 2)
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner().invoke(app, ["devices", "fiware"], env={"WASTEGATE_DATABASE_URL": settings.database_url})
    assert result.exit_code == 0, result.output
    entities = {e["id"]: e for e in json.loads(result.stdout)}
    burning = entities["urn:ngsi-ld:WasteContainer:C-0001"]
    assert (burning["fillingLevel"], burning["status"], burning["temperature"]) == (0.75, "burning", 71.0)
    assert burning["location"] == {"type": "Point", "coordinates": [2.1744, 41.4036]}
    quiet = entities["urn:ngsi-ld:WasteContainer:C-0002"]
    assert quiet["status"] == "unknown" and "fillingLevel" not in quiet
    truck = entities["urn:ngsi-ld:Vehicle:T9"]
    assert truck["type"] == "Vehicle" and truck["location"]["coordinates"] == [2.16, 41.39] and truck["speed"] == 12.0
