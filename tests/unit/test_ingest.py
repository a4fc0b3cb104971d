from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gateway.devices import DeviceDirectory
from gateway.events import RawMessage
from gateway.ingest import IngestLimits, Ingestor
from gateway.profiles.decoders import Decoded
from gateway.profiles.loader import Profile, ProfileSet, load_profiles
from gateway.profiles.model import ProfileConfig
from gateway.profiles.topics import TopicPattern
from tests.support import REPO

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def ingestor(profiles: ProfileSet, max_payload: int = 1000) -> Ingestor:
    return Ingestor(profiles, DeviceDirectory(), lambda: NOW, IngestLimits(max_payload, timedelta(minutes=10),
                                                                         timedelta(days=7)))


def raw(topic: str, payload: bytes) -> RawMessage:
    return RawMessage(topic, payload, NOW)


def test_a_batch_is_split_into_readings_and_rejections_in_order() -> None:
    good = json.dumps({"ts": NOW.isoformat(), "lat": 41.4, "lon": 2.1}).encode()
    result = ingestor(load_profiles(REPO / "device_profiles")).process([
        raw("trucks/T1/telemetry", good),
        raw("trucks/T1/telemetry", b"x" * 1001),
        raw("lorries/T1/telemetry", good),
        raw("trucks/T1/telemetry", b"{oops"),
        raw("trucks/T2/telemetry", good),
    ])
    assert [r.device_id for r in result.readings] == ["T1", "T2"]
    assert [r.reason for r in result.rejections] == ["payload_too_large", "no_profile", "invalid_json"]
    assert result.rejections[2].profile == "truck" and result.rejections[2].device_id == "T1"


class _CrashingDecoder:
    def decode(self, payload: bytes, topic_values: object) -> list[Decoded]:
        raise ZeroDivisionError("vendor bug")


def test_a_crashing_decoder_costs_one_message_not_the_gateway() -> None:
    config = ProfileConfig.model_validate({
        "name": "fragile", "kind": "sensor", "topic": "f/{device_id}",
        "decoder": {"type": "json_mapping"}})
    profiles = ProfileSet([Profile(config, TopicPattern.parse(config.topic), _CrashingDecoder())])
    result = ingestor(profiles).process([raw("f/1", b"{}"), raw("f/2", b"{}")])
    assert [r.reason for r in result.rejections] == ["decoder_error", "decoder_error"]
    assert "ZeroDivisionError: vendor bug" in result.rejections[0].detail


def test_a_device_attribute_of_the_wrong_type_costs_one_message() -> None:
    from types import MappingProxyType

    from gateway.devices import Device

    attributes = MappingProxyType({"bin_depth_mm": 1000, "sensor_offset_mm": "abc"})
    directory = DeviceDirectory([Device("C1", "container", "container", attributes=attributes)])
    ingestor = Ingestor(load_profiles(REPO / "device_profiles"), directory, lambda: NOW,
                        IngestLimits(1000, timedelta(minutes=10), timedelta(days=7)))
    payload = json.dumps({"ts": NOW.isoformat(), "distance_mm": 300}).encode()
    result = ingestor.process([raw("containers/C1/telemetry", payload), raw("trucks/T1/telemetry", json.dumps(
        {"ts": NOW.isoformat(), "lat": 41.4, "lon": 2.1}).encode())])
    assert [r.reason for r in result.rejections] == ["decoder_error"]
    assert "ValueError" in result.rejections[0].detail and [r.device_id for r in result.readings] == ["T1"]
