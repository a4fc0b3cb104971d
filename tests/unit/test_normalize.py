from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from gateway.devices import Device, DeviceDirectory
from gateway.events import RawMessage, Reading, Rejection, message_key
from gateway.ingest.normalize import REASONS, Normalizer
from gateway.profiles.decoders import Decoded
from gateway.profiles.loader import load_profiles
from tests.support import REPO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PROFILES = load_profiles(REPO / "device_profiles")
TRUCK = PROFILES.by_name["truck"]
CONTAINER = PROFILES.by_name["container"]


def normalizer(*devices: Device) -> Normalizer:
    return Normalizer(DeviceDirectory(devices), timedelta(minutes=10), timedelta(days=7))


def message(topic: str = "trucks/T1/telemetry", payload: bytes = b"{}") -> RawMessage:
    return RawMessage(topic, payload, NOW)


def run(record: Decoded, profile: object = TRUCK, device_id: str = "T1", *devices: Device) -> Reading | Rejection:
    return normalizer(*devices).normalize(message(), profile, device_id, record, 0, NOW)  # type: ignore[arg-type]


def reason(outcome: Reading | Rejection) -> str:
    assert isinstance(outcome, Rejection), outcome
    assert outcome.reason in REASONS
    return outcome.reason


def test_a_good_truck_record_becomes_a_reading() -> None:
    reading = run(Decoded({"lat": 41.4, "lon": 2.17, "speed_kmh": 30.0}, NOW - timedelta(seconds=3)))
    assert isinstance(reading, Reading)
    assert (reading.device_id, reading.lat, reading.lon, reading.speed_kmh) == ("T1", 41.4, 2.17, 30.0)
    assert reading.time == NOW - timedelta(seconds=3) and reading.received_at == NOW
    assert reading.message_key == message_key("trucks/T1/telemetry", b"{}")


@pytest.mark.parametrize(("values", "expected"), [
    ({"lat": 91.0, "lon": 2.0}, "coordinates_out_of_range"),
    ({"lat": 41.0, "lon": -180.5}, "coordinates_out_of_range"),
    ({"lat": 41.0}, "coordinates_out_of_range"),
    ({"lat": 0.0, "lon": 0.0}, "no_gps_fix"),
])
def test_bad_positions(values: dict[str, float], expected: str) -> None:
    assert reason(run(Decoded(values, NOW))) == expected


def test_time_bounds_use_the_injected_now() -> None:
    assert reason(run(Decoded({}, NOW + timedelta(minutes=11)))) == "time_in_future"
    assert reason(run(Decoded({}, NOW - timedelta(days=8)))) == "time_too_old"
    assert isinstance(run(Decoded({}, NOW + timedelta(minutes=9))), Reading)
    # no device time: the time it was received
    reading = run(Decoded({"lat": 41.0, "lon": 2.0}))
    assert isinstance(reading, Reading) and reading.time == NOW


def test_payload_device_id_must_agree_with_the_topic() -> None:
    assert reason(run(Decoded({}, NOW, device_id="T2"))) == "device_id_mismatch"


def test_registration_policy() -> None:
    assert reason(run(Decoded({"fill_pct": 10.0}, NOW), CONTAINER, "C1")) == "unknown_device"
    known = Device("C1", "container", "container")
    assert isinstance(run(Decoded({"fill_pct": 10.0}, NOW), CONTAINER, "C1", known), Reading)
    assert isinstance(run(Decoded({}, NOW), TRUCK, "T-new"), Reading)  # trucks are auto-registered


def container(depth: float | None, offset: float | None = None) -> Device:
    attributes = {k: v for k, v in {"bin_depth_mm": depth, "sensor_offset_mm": offset}.items() if v is not None}
    return Device("C1", "container", "container", attributes=MappingProxyType(attributes))


@pytest.mark.parametrize(("depth", "offset", "distance", "fill", "flag"), [
    (1000, None, 250, 75.0, None),
    (1200, 100, 400, 75.0, None),
    (1000, None, 1000, 0.0, None),
    (1000, None, 1500, None, "fill_pct_out_of_range"),
    (1000, 100, 50, None, "fill_pct_out_of_range"),
    (None, None, 500, None, "fill_pct_unknown"),
])
def test_fill_level_from_distance(depth: float | None, offset: float | None, distance: float,
                                  fill: float | None, flag: str | None) -> None:
    reading = run(Decoded({"distance_mm": distance}, NOW), CONTAINER, "C1", container(depth, offset))
    assert isinstance(reading, Reading)
    assert reading.fill_pct == fill
    assert reading.distance_mm == distance
    if flag:
        assert flag in reading.extra
    else:
        assert reading.extra == {}


def test_a_fill_level_above_100_is_kept_aside() -> None:
    reading = run(Decoded({"fill_pct": 130.0}, NOW), CONTAINER, "C1", container(1000))
    assert isinstance(reading, Reading) and reading.fill_pct is None
    assert reading.extra == {"fill_pct_out_of_range": 130.0}


def test_message_keys_differ_by_topic_payload_and_record_index() -> None:
    keys = {message_key("a/1", b"x"), message_key("a/2", b"x"), message_key("a/1", b"y"), message_key("a/1", b"x", 1)}
    assert len(keys) == 4 and message_key("a/1", b"x") == message_key("a/1", b"x")
