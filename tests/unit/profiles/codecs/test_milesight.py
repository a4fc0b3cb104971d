"""The Milesight codecs against every published byte/value pair for the EM310-UDL, EM400-UDL, EM310-TILT and AT101
(`data/vectors.json`), against the payloads of real ChirpStack and The Things Stack envelopes, against frames built
from the layout for entries no published pair covers, and against random and truncated bytes."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.profiles.codecs import CODECS, milesight
from gateway.profiles.decoded import Decoded, DecodeError

DATA = Path(__file__).parent / "data"

CODEC_OF_DEVICE = {
    "Milesight EM310-UDL": "milesight-em310-udl",
    "Milesight EM400-UDL": "milesight-em400-udl",
    "Milesight EM310-TILT": "milesight-em310-tilt",
    "Milesight AT101": "milesight-at101",
}
OUT_OF_SCOPE_DEVICES = {"Dragino LDDS75"}
# Envelope files are named after the device: EM310-UDL.payload.json, EM310-UDL.tts-community.payload.json, ...
CODEC_OF_ENVELOPE_PREFIX = {device.removeprefix("Milesight "): codec for device, codec in CODEC_OF_DEVICE.items()}

CANONICAL_FIELDS = {"lat", "lon", "temperature_c", "battery_pct", "distance_mm", "tilted"}

# How each key of an upstream expectation maps onto a codec's output. The vendor already uses the canonical units
# (battery %, °C, mm, degrees), so the canonical fields differ from upstream only in name, except `position`, a
# string that becomes the boolean `tilted`. Every key not listed here is expected in `extra` under its own name.
_TILTED_OF_POSITION = {"tilt": True, "normal": False}
TO_CANONICAL: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "battery": ("battery_pct", lambda percent: percent),
    "temperature": ("temperature_c", lambda celsius: celsius),
    "distance": ("distance_mm", lambda millimetres: millimetres),
    "latitude": ("lat", lambda degrees: degrees),
    "longitude": ("lon", lambda degrees: degrees),
    "position": ("tilted", lambda position: _TILTED_OF_POSITION[position]),
    # Drift 1: the TTN em310-udl-codec.yaml example names the same value `tilt`; newer vendor decoders say
    # `position`. The codec reads the byte, so both names land on `tilted`.
    "tilt": ("tilted", lambda position: _TILTED_OF_POSITION[position]),
}
# Drift 2: ThingsBoard's EM400-UDL converter reports the alarm type of the 0x83/0x84 entries as a flag under its own
# names; the codec keeps the vendor's alarm type, of which `threshold_alarm` is the flag's True.
THINGSBOARD_EM400_ALARMS = {"temperature_abnormal": "temperature_alarm", "distance_alarming": "distance_alarm"}
_ALARM_OF_FLAG = {True: "threshold_alarm", False: "threshold_alarm_release"}


def expected_output(codec: str, upstream: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in upstream.items():
        if key in TO_CANONICAL:
            name, convert = TO_CANONICAL[key]
            values[name] = convert(value)
        elif codec == "milesight-em400-udl" and key in THINGSBOARD_EM400_ALARMS:
            extra[THINGSBOARD_EM400_ALARMS[key]] = _ALARM_OF_FLAG[value]
        else:
            extra[key] = value
    return values, extra


def assert_decodes_to(codec: str, payload: bytes, f_port: int | None, upstream: Mapping[str, Any]) -> None:
    decoded = CODECS[codec](payload, f_port)
    values, extra = expected_output(codec, upstream)
    assert decoded.values == values
    assert decoded.extra == extra
    assert decoded.time is None and decoded.device_id is None


def _origin(source: str) -> str:
    if source.startswith("thingsboard/"):
        return "thingsboard"
    return "ttn" if "ttn-lorawan-devices." in source else "milesight"


def _vectors() -> list[Any]:
    params = []
    for index, vector in enumerate(json.loads((DATA / "vectors.json").read_text())):
        if vector["device"] in OUT_OF_SCOPE_DEVICES:
            continue
        codec = CODEC_OF_DEVICE[vector["device"]]
        label = f"{index:02d}-{vector['device'].removeprefix('Milesight ')}-{_origin(vector['source'])}"
        params.append(pytest.param(codec, vector, id=label))
    return params


VECTORS = _vectors()


def test_every_milesight_vector_is_a_case() -> None:
    # 3 EM310-UDL + 4 EM400-UDL + 4 AT101 + 2 EM310-TILT; a device name that matched nothing would fail above.
    assert len(VECTORS) == 13


@pytest.mark.parametrize(("codec", "vector"), VECTORS)
def test_published_vectors(codec: str, vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["bytes_hex"])
    assert base64.b64decode(vector["bytes_base64"]) == payload
    # The two `known_mismatch` vectors are the upstream drifts: key names differ, the bytes do not, so they are
    # held to the same equality through TO_CANONICAL and THINGSBOARD_EM400_ALARMS.
    assert_decodes_to(codec, payload, vector["fPort"], vector["expected"])


def _envelopes() -> list[Any]:
    params = []
    for path in sorted((DATA / "chirpstack-v4").glob("*.payload.json")):
        envelope = json.loads(path.read_text())
        params.append((path, envelope["data"], envelope["fPort"]))
    for path in sorted((DATA / "ttn-v3").glob("*.payload.json")):
        uplink = json.loads(path.read_text())["uplink_message"]
        params.append((path, uplink["frm_payload"], uplink["f_port"]))
    return [
        pytest.param(
            CODEC_OF_ENVELOPE_PREFIX[path.name.split(".")[0]],
            base64.b64decode(data),
            f_port,
            path.with_name(path.name.replace(".payload.", ".result.")),
            id=f"{path.parent.name}/{path.name.removesuffix('.payload.json')}",
        )
        for path, data, f_port in params
    ]


ENVELOPES = _envelopes()


def test_every_real_envelope_is_a_case() -> None:
    # 4 ChirpStack v4 + 8 The Things Stack (community and industries), one per device each.
    assert len(ENVELOPES) == 12


@pytest.mark.parametrize(("codec", "payload", "f_port", "result_path"), ENVELOPES)
def test_real_envelope_payloads(codec: str, payload: bytes, f_port: int, result_path: Path) -> None:
    (telemetry,) = json.loads(result_path.read_text())["telemetry"]
    assert_decodes_to(codec, payload, f_port, telemetry["values"])


def test_the_registry_holds_the_four_milesight_codecs() -> None:
    # Other vendors' codecs may sit beside them: the registry is checked as a whole in test_codec_contract.py.
    assert {name: CODECS[name] for name in LAYOUTS} == {
        "milesight-em310-udl": milesight.em310_udl, "milesight-em400-udl": milesight.em400_udl,
        "milesight-em310-tilt": milesight.em310_tilt, "milesight-at101": milesight.at101,
    }
    assert set(CODEC_OF_DEVICE.values()) == set(LAYOUTS)


def _le(value: int, size: int) -> str:
    return value.to_bytes(size, "little", signed=True).hex()


# Frames built from the payload layout for entries that no published vector exercises. These are not vendor
# facts: they check that each entry is wired to the right reader with the right size and sign.
CONSTRUCTED = [
    pytest.param(
        "milesight-em310-udl", "017500" + "0382" + "0000" + "040000",
        {"battery_pct": 0, "distance_mm": 0, "tilted": False}, {}, id="em310-udl-empty-battery-normal",
    ),
    pytest.param(
        "milesight-em310-udl", "FF0F02" + "FFFEFF" + "FFFF0100",
        {}, {"lorawan_class": "class_c", "reset_event": "reset", "tsl_version": "v1.0"}, id="device-info-rest",
    ),
    pytest.param(
        "milesight-em400-udl", "0367" + _le(-105, 2) + "0482FFFF" + "050000",
        {"temperature_c": -10.5, "distance_mm": 65535, "tilted": False}, {}, id="em400-udl-below-zero",
    ),
    pytest.param(
        "milesight-em400-udl", "8367" + _le(-5, 2) + "00" + "84820A0000",
        {"temperature_c": -0.5, "distance_mm": 10},
        {"temperature_alarm": "threshold_alarm_release", "distance_alarm": "threshold_alarm_release"},
        id="em400-udl-alarm-release",
    ),
    pytest.param(
        "milesight-em310-tilt", "017532" + "03CF" + _le(-1000, 2) + _le(4550, 2) + _le(-9000, 2) + "02",
        {"battery_pct": 50},
        {"angle_x": -10.0, "angle_y": 45.5, "angle_z": -90.0,
         "threshold_x": "normal", "threshold_y": "trigger", "threshold_z": "normal"},
        id="em310-tilt-negative-angles",
    ),
    pytest.param(
        "milesight-at101", "0488" + _le(-33_868_800, 4) + _le(-70_669_300, 4) + "13",
        {"lat": -33.8688, "lon": -70.6693}, {"motion_status": "stop_moving", "geofence_status": "outside"},
        id="at101-south-west-outside",
    ),
    pytest.param(
        "milesight-at101", "8488" + _le(41_380_000, 4) + _le(2_170_000, 4) + "01",
        {"lat": 41.38, "lon": 2.17}, {"motion_status": "start_moving", "geofence_status": "inside"},
        id="at101-location-on-alarm-channel",
    ),
    pytest.param(
        "milesight-at101", "06D908" + "FF" * 6 + "0000",
        {}, {"wifi_scan_result": "timeout"}, id="at101-wifi-timeout",
    ),
    pytest.param(
        "milesight-at101", "070001" + "8367" + _le(612, 2) + "01",
        {"temperature_c": 61.2}, {"tamper_status": "uninstall", "temperature_abnormal": True},
        id="at101-tamper-and-hot",
    ),
    pytest.param(
        "milesight-at101",
        "20CE" + (1_700_000_000).to_bytes(4, "little").hex() + _le(2_170_000, 4) + _le(41_380_000, 4)
        + "20CE" + (1_700_000_060).to_bytes(4, "little").hex() + _le(2_171_000, 4) + _le(41_381_000, 4),
        {},
        {"history": [{"timestamp": 1_700_000_000, "lat": 41.38, "lon": 2.17},
                     {"timestamp": 1_700_000_060, "lat": 41.381, "lon": 2.171}]},
        id="at101-history-longitude-first",
    ),
]


@pytest.mark.parametrize(("codec", "payload_hex", "values", "extra"), CONSTRUCTED)
def test_constructed_frames(codec: str, payload_hex: str, values: dict[str, Any], extra: dict[str, Any]) -> None:
    decoded = CODECS[codec](bytes.fromhex(payload_hex), 85)
    assert decoded.values == values
    assert decoded.extra == extra


@pytest.mark.parametrize("f_port", [None, 1, 85, 223])
def test_any_application_port_is_read(f_port: int | None) -> None:
    assert CODECS["milesight-em310-udl"](bytes.fromhex("01755C"), f_port).values == {"battery_pct": 92}


@pytest.mark.parametrize("f_port", [0, 224, 255])
def test_mac_and_reserved_ports_are_refused(f_port: int) -> None:
    with pytest.raises(DecodeError) as caught:
        CODECS["milesight-em310-udl"](bytes.fromhex("01755C"), f_port)
    assert caught.value.reason == "bad_payload" and f"fPort {f_port}" in caught.value.detail


_LOCATION = _le(24_624_350, 4) + _le(118_030_088, 4)


@pytest.mark.parametrize(
    ("codec", "payload_hex", "detail"),
    [
        pytest.param("milesight-em310-udl", "", "no channel/type header at byte 0", id="empty"),
        pytest.param("milesight-em310-udl", "01755C03", "truncated entry at byte 3", id="truncated-header"),
        pytest.param("milesight-em310-udl", "01755C038244", "truncated value at byte 5", id="truncated-value"),
        pytest.param("milesight-at101", "06D9081CC316222DF9C3", "needs 9 bytes, 8 left", id="truncated-wifi"),
        pytest.param(
            "milesight-em310-udl", "8367E80001", "unknown channel 0x83 type 0x67 at byte 0", id="em400-alarm-on-em310",
        ),
        pytest.param(
            "milesight-em400-udl", "01755C040001", "unknown channel 0x04 type 0x00 at byte 3", id="em310-tilt-on-em400",
        ),
        pytest.param("milesight-em310-tilt", "0E1C0B05", "unknown channel 0x0E type 0x1C at byte 0", id="dragino"),
        pytest.param("milesight-em310-udl", "040002", "position code 2 at byte 2", id="position-code"),
        pytest.param("milesight-em400-udl", "01755C8367E80007", "temperature alarm code 7 at byte 7", id="alarm-code"),
        pytest.param("milesight-at101", "0488" + _LOCATION + "25", "motion status code 5 at byte 10", id="motion-code"),
        pytest.param("milesight-at101", "0488" + _LOCATION + "42", "geofence status code 4 at byte 10", id="geofence"),
        pytest.param("milesight-at101", "FF0F07", "LoRaWAN class code 7 at byte 2", id="lorawan-class-code"),
        pytest.param(
            "milesight-at101", "0488" + _le(91_000_000, 4) + _le(0, 4) + "22", "outside WGS84 bounds", id="latitude",
        ),
    ],
)
def test_malformed_payloads_say_what_and_where(codec: str, payload_hex: str, detail: str) -> None:
    with pytest.raises(DecodeError) as caught:
        CODECS[codec](bytes.fromhex(payload_hex), 85)
    assert caught.value.reason == "bad_payload"
    assert detail in caught.value.detail


LAYOUTS = {
    "milesight-em310-udl": milesight.EM310_UDL,
    "milesight-em400-udl": milesight.EM400_UDL,
    "milesight-em310-tilt": milesight.EM310_TILT,
    "milesight-at101": milesight.AT101,
}


def _random_payloads(rng: random.Random, codec: str) -> list[bytes]:
    pairs = list(LAYOUTS[codec].entries.items())
    published = [bytes.fromhex(param.values[1]["bytes_hex"]) for param in VECTORS if param.values[0] == codec]
    payloads = [rng.randbytes(rng.randrange(0, 48)) for _ in range(2000)]
    # Random bytes rarely get past the first header, so also chain known headers with values of about the right
    # length, to reach the readers and the later entries.
    for _ in range(2000):
        payload = bytearray()
        for _ in range(rng.randrange(1, 7)):
            (channel, channel_type), entry = rng.choice(pairs)
            size = entry.size + rng.choice([0, 0, 0, 0, -1, 1, -entry.size])
            payload += bytes([channel, channel_type]) + rng.randbytes(max(size, 0))
        payloads.append(bytes(payload))
    for vector in published:
        payloads += [vector[:cut] for cut in range(len(vector))]
        for _ in range(200):
            mutated = bytearray(vector)
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            payloads.append(bytes(mutated))
    return payloads


@pytest.mark.parametrize("codec", sorted(LAYOUTS))
def test_random_and_truncated_bytes_give_a_reading_or_a_decode_error(codec: str) -> None:
    rng = random.Random(20240917)
    outcomes = {"decoded": 0, "refused": 0}
    for payload in _random_payloads(rng, codec):
        try:
            decoded = CODECS[codec](payload, rng.choice([None, 85]))
        except DecodeError as error:
            assert error.reason == "bad_payload"
            assert "byte" in error.detail, error.detail
            outcomes["refused"] += 1
        else:
            assert isinstance(decoded, Decoded)
            assert set(decoded.values) <= CANONICAL_FIELDS, decoded.values
            assert isinstance(decoded.values.get("tilted", False), bool)
            outcomes["decoded"] += 1
    # Both outcomes must occur, or the generator stopped exercising one of the two paths.
    assert outcomes["decoded"] > 100 and outcomes["refused"] > 100, outcomes
