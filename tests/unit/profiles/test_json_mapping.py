from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from gateway.profiles.decoded import DecodeError
from gateway.profiles.decoders.json_mapping import JsonMappingConfig


def decoder(**mapping: object) -> object:
    return JsonMappingConfig.model_validate({"type": "json_mapping", **mapping}).build()


def decode(mapping: dict[str, object], payload: object) -> object:
    return decoder(**mapping).decode(json.dumps(payload).encode(), {})[0]  # type: ignore[attr-defined]


def test_paths_units_and_unknown_sentinels() -> None:
    record = decode(
        {"time": "t", "fields": {
            "lat": "pos.0", "lon": "pos.1",
            "speed_kmh": {"path": "gps.vel", "unit": "m/s", "unknown_values": [-1]},
            "temperature_c": {"path": "temp", "unit": "F"},
            "fill_pct": {"path": "level", "unit": "ratio"},
            "battery_v": {"path": "mv", "unit": "mV"},
            "tilted": "tilt", "rfid": "tag"},
         "extra": {"acc": "acc"}},
        {"t": 1795421702, "pos": [41.38, 2.17], "gps": {"vel": 10}, "temp": 212, "level": 0.4, "mv": 3600,
         "tilt": "yes", "tag": 123456, "acc": 12},
    )
    values = record.values  # type: ignore[attr-defined]
    assert values["lat"] == 41.38 and values["lon"] == 2.17
    assert values["speed_kmh"] == pytest.approx(36.0)
    assert values["temperature_c"] == pytest.approx(100.0)
    assert values["fill_pct"] == pytest.approx(40.0)
    assert values["battery_v"] == pytest.approx(3.6)
    assert values["tilted"] is True
    assert values["rfid"] == "123456"
    assert record.extra == {"acc": 12}  # type: ignore[attr-defined]
    assert decode({"fields": {"speed_kmh": {"path": "v", "unknown_values": [-1]}}}, {"v": -1}).values == {}  # type: ignore[attr-defined]


def test_numbers_sent_as_strings_are_read_and_nulls_are_absent() -> None:
    record = decode({"fields": {"weight_kg": "w", "lat": "lat"}}, {"w": "12.5", "lat": None})
    assert record.values == {"weight_kg": 12.5}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff", "invalid_encoding"),
    (b"{", "invalid_json"),
    (b"[1, 2]", "payload_mismatch"),
    (b'{"ts": 1795421702, "w": "heavy"}', "payload_mismatch"),
    (b'{"ts": 1795421702, "w": true}', "payload_mismatch"),
    (b'{"w": 1}', "payload_mismatch"),
    (b'{"ts": "soon", "w": 1}', "bad_timestamp"),
    (b'{"ts": 1795421702, "w": 1, "tilt": "sideways"}', "payload_mismatch"),
    (b'{"ts": 1795421702, "w": NaN}', "payload_mismatch"),  # the JSON is read (as before), the value refused
    (b'{"ts": 1795421702, "w": 1e999}', "payload_mismatch"),
    (b'\xef\xbb\xbf{"ts": 1795421702, "w": 1}', "invalid_json"),  # a byte-order mark
])
def test_bad_payloads_raise_a_reason(payload: bytes, reason: str) -> None:
    mapping = decoder(time="ts", fields={"weight_kg": "w", "tilted": "tilt"})
    with pytest.raises(DecodeError) as caught:
        mapping.decode(payload, {})  # type: ignore[attr-defined]
    assert caught.value.reason == reason


def test_the_fast_parser_and_the_standard_one_agree() -> None:
    mapping = decoder(time="ts", fields={"weight_kg": "w", "rfid": "tag"}, extra={"deep": "a.b.0"})
    payload = {"ts": "2026-11-23T08:00:00+01:00", "w": 12, "tag": "é\u20ac", "a": {"b": [{"x": [1.5, None]}]}}
    record = mapping.decode(json.dumps(payload).encode(), {})[0]  # type: ignore[attr-defined]
    assert record.values == {"weight_kg": 12.0, "rfid": "é€"}
    assert record.extra == {"deep": {"x": [1.5, None]}}
    assert record.time.isoformat() == "2026-11-23T07:00:00+00:00"
    # integers beyond 64 bits stay exact (the fast parser would make floats of them)
    for huge in (123456789012345678901234567890, -9223372036854775809, 18446744073709551616):
        exact = b'{"ts": 1795421702, "a": {"b": [%d]}}' % huge
        assert mapping.decode(exact, {})[0].extra == {"deep": huge}  # type: ignore[attr-defined]


def test_required_field() -> None:
    mapping = decoder(fields={"fill_pct": {"path": "f", "required": True}})
    with pytest.raises(DecodeError, match="missing required field 'f'"):
        mapping.decode(b"{}", {})  # type: ignore[attr-defined]


@pytest.mark.parametrize("mapping", [
    {"fields": {"colour": "c"}},
    {"fields": {"speed_kmh": {"path": "v", "unit": "furlongs"}}},
    {"fields": {"lat": {"path": "x", "scael": 2}}},
    {"time": {"path": "t", "format": "rfc822"}},
    {"unknown_key": 1},
])
def test_bad_mappings_are_refused(mapping: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        decoder(**mapping)
