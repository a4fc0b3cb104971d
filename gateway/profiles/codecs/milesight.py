"""Milesight's channel/type payloads, for the EM310-UDL, EM400-UDL, EM310-TILT and AT101.

A Milesight uplink is a run of entries `channel id (1 byte) | channel type (1 byte) | value`, where the pair fixes
the value's length and meaning and integers are little-endian. The pairs a device may send are its layout: one
walker reads every layout, and each device is a table of pairs.

Written from the published payload layouts and checked against the vendor's byte/value examples. The vendor's
decoders are GPL-3.0: they were consulted as a reference and an oracle only, and no code was taken from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.profiles.decoded import Decoded, DecodeError

# LoRaWAN keeps fPort 0 for MAC commands and 224-255 for tests; Milesight's application port defaults to 85 but
# can be changed on the device, so the port cannot tell a Milesight frame apart and any application port is read.
_APPLICATION_PORTS: Final = range(1, 224)


@dataclass(slots=True)
class _Frame:
    """What the entries of one uplink add up to."""

    values: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


# Reads one entry's value, exactly `Entry.size` bytes, into the frame. `at` is the value's offset in the payload,
# so that a bad value can be reported where it is.
Reader = Callable[[bytes, int, _Frame], None]


@dataclass(frozen=True, slots=True)
class Entry:
    size: int
    read: Reader


@dataclass(frozen=True, slots=True)
class Layout:
    device: str
    entries: Mapping[tuple[int, int], Entry]


def decode_frame(payload: bytes, f_port: int | None, layout: Layout) -> Decoded:
    if f_port is not None and f_port not in _APPLICATION_PORTS:
        raise DecodeError("bad_payload", f"fPort {f_port} carries no application payload (byte 0 not read)")
    if not payload:
        raise DecodeError("bad_payload", f"empty {layout.device} payload: no channel/type header at byte 0")
    frame = _Frame()
    offset = 0
    while offset < len(payload):
        if len(payload) - offset < 2:
            raise DecodeError(
                "bad_payload", f"truncated entry at byte {offset}: 1 byte left, a channel/type header needs 2"
            )
        channel, channel_type = payload[offset], payload[offset + 1]
        entry = layout.entries.get((channel, channel_type))
        if entry is None:
            raise DecodeError(
                "bad_payload",
                f"unknown channel 0x{channel:02X} type 0x{channel_type:02X} at byte {offset} for {layout.device}",
            )
        start, end = offset + 2, offset + 2 + entry.size
        if end > len(payload):
            raise DecodeError(
                "bad_payload",
                f"truncated value at byte {start}: channel 0x{channel:02X} type 0x{channel_type:02X} needs "
                f"{entry.size} bytes, {len(payload) - start} left",
            )
        entry.read(payload[start:end], start, frame)
        offset = end
    return Decoded(values=frame.values, extra=frame.extra)


def _unsigned(data: bytes) -> int:
    return int.from_bytes(data, "little")


def _signed(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def _lookup(names: Mapping[int, str], code: int, what: str, at: int) -> str:
    # An undefined code is refused rather than passed on as "unknown": a guessed state would reach the rules.
    name = names.get(code)
    if name is None:
        raise DecodeError("bad_payload", f"{what} code {code} at byte {at} is not one of {sorted(names)}")
    return name


def _coordinates(latitude_e6: int, longitude_e6: int, at: int) -> tuple[float, float]:
    lat, lon = latitude_e6 / 1_000_000, longitude_e6 / 1_000_000
    # Geofences and the telemetry table assume WGS84; a position off the globe is a corrupt frame, not a place.
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise DecodeError("bad_payload", f"position {lat}, {lon} at byte {at} is outside WGS84 bounds")
    return lat, lon


# Device information, sent after power-on and on request. The layout is the same on every Milesight device.

_LORAWAN_CLASSES: Final = {0: "class_a", 1: "class_b", 2: "class_c", 3: "class_c_to_b"}


def _ipso_version(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["ipso_version"] = f"v{data[0] >> 4}.{data[0] & 0x0F}"


def _hardware_version(data: bytes, at: int, frame: _Frame) -> None:
    # The minor version is the high nibble of the second byte: 01 10 is v1.1.
    frame.extra["hardware_version"] = f"v{data[0]}.{data[1] >> 4}"


def _firmware_version(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["firmware_version"] = f"v{data[0]}.{data[1]}"


def _tsl_version(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["tsl_version"] = f"v{data[0]}.{data[1]}"


def _serial_number(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["sn"] = data.hex()


def _lorawan_class(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["lorawan_class"] = _lookup(_LORAWAN_CLASSES, data[0], "LoRaWAN class", at)


# The device sends a placeholder byte (0xFF) with these two: the entry itself is the event.
def _powered_on(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["device_status"] = "on"


def _reset(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["reset_event"] = "reset"


_DEVICE_INFO: Final[Mapping[tuple[int, int], Entry]] = {
    (0xFF, 0x01): Entry(1, _ipso_version),
    (0xFF, 0x09): Entry(2, _hardware_version),
    (0xFF, 0x0A): Entry(2, _firmware_version),
    (0xFF, 0x0B): Entry(1, _powered_on),
    (0xFF, 0x0F): Entry(1, _lorawan_class),
    (0xFF, 0x16): Entry(8, _serial_number),
    (0xFF, 0xFE): Entry(1, _reset),
    (0xFF, 0xFF): Entry(2, _tsl_version),
}


# Measurements.

_POSITIONS: Final = {0: "normal", 1: "tilt"}
_THRESHOLD_ALARMS: Final = {0: "threshold_alarm_release", 1: "threshold_alarm"}
_MOTION_STATUSES: Final = {0: "unknown", 1: "start_moving", 2: "moving", 3: "stop_moving"}
_GEOFENCE_STATUSES: Final = {0: "inside", 1: "outside", 2: "unset", 3: "unknown"}
_TAMPER_STATUSES: Final = {0: "install", 1: "uninstall"}
# A Wi-Fi entry with this MAC reports that the scan timed out, not an access point.
_NO_ACCESS_POINT: Final = b"\xff" * 6


def _battery(data: bytes, at: int, frame: _Frame) -> None:
    frame.values["battery_pct"] = data[0]


def _temperature(data: bytes, at: int, frame: _Frame) -> None:
    frame.values["temperature_c"] = _signed(data[0:2]) / 10


def _distance(data: bytes, at: int, frame: _Frame) -> None:
    frame.values["distance_mm"] = _unsigned(data[0:2])


def _position(data: bytes, at: int, frame: _Frame) -> None:
    frame.values["tilted"] = _lookup(_POSITIONS, data[0], "position", at) == "tilt"


def _temperature_with_alarm(data: bytes, at: int, frame: _Frame) -> None:
    _temperature(data, at, frame)
    frame.extra["temperature_alarm"] = _lookup(_THRESHOLD_ALARMS, data[2], "temperature alarm", at + 2)


def _distance_with_alarm(data: bytes, at: int, frame: _Frame) -> None:
    _distance(data, at, frame)
    frame.extra["distance_alarm"] = _lookup(_THRESHOLD_ALARMS, data[2], "distance alarm", at + 2)


def _temperature_with_abnormal_flag(data: bytes, at: int, frame: _Frame) -> None:
    # The AT101 sends a plain flag where the EM400-UDL sends an alarm type, so the two keep their own names.
    _temperature(data, at, frame)
    frame.extra["temperature_abnormal"] = data[2] != 0


def _motion_status(status: int, at: int) -> str:
    return _lookup(_MOTION_STATUSES, status & 0x0F, "motion status", at)


def _location(data: bytes, at: int, frame: _Frame) -> None:
    frame.values["lat"], frame.values["lon"] = _coordinates(_signed(data[0:4]), _signed(data[4:8]), at)
    frame.extra["motion_status"] = _motion_status(data[8], at + 8)
    frame.extra["geofence_status"] = _lookup(_GEOFENCE_STATUSES, data[8] >> 4, "geofence status", at + 8)


def _wifi_access_point(data: bytes, at: int, frame: _Frame) -> None:
    # A tracker that found no GNSS fix reports the access points it heard instead and no lat/lon; the access
    # points are kept for a network-side Wi-Fi geolocation.
    mac = data[1:7]
    if mac == _NO_ACCESS_POINT:
        frame.extra["wifi_scan_result"] = "timeout"
        return
    motion_status = _motion_status(data[8], at + 8)
    frame.extra.setdefault("wifi", []).append(
        {"group": data[0], "mac": mac.hex(":"), "rssi": _signed(data[7:8]), "motion_status": motion_status}
    )
    frame.extra["wifi_scan_result"] = "finish"
    frame.extra["motion_status"] = motion_status


def _tamper_status(data: bytes, at: int, frame: _Frame) -> None:
    frame.extra["tamper_status"] = _lookup(_TAMPER_STATUSES, data[0], "tamper status", at)


def _stored_location(data: bytes, at: int, frame: _Frame) -> None:
    # Positions recorded while the tracker was out of coverage. They belong to other times than this uplink's,
    # so they stay out of `values`. Longitude comes before latitude here, unlike the live location entry.
    lat, lon = _coordinates(_signed(data[8:12]), _signed(data[4:8]), at + 4)
    frame.extra.setdefault("history", []).append({"timestamp": _unsigned(data[0:4]), "lat": lat, "lon": lon})


def _angles(data: bytes, at: int, frame: _Frame) -> None:
    triggered = data[6]
    for index, axis in enumerate("xyz"):
        frame.extra[f"angle_{axis}"] = _signed(data[2 * index : 2 * index + 2]) / 100
        frame.extra[f"threshold_{axis}"] = "trigger" if triggered >> index & 1 else "normal"


_BATTERY: Final = {(0x01, 0x75): Entry(1, _battery)}

EM310_UDL: Final = Layout(
    "Milesight EM310-UDL",
    {
        **_DEVICE_INFO,
        **_BATTERY,
        (0x03, 0x82): Entry(2, _distance),
        (0x04, 0x00): Entry(1, _position),
    },
)

EM400_UDL: Final = Layout(
    "Milesight EM400-UDL",
    {
        **_DEVICE_INFO,
        **_BATTERY,
        (0x03, 0x67): Entry(2, _temperature),
        (0x04, 0x82): Entry(2, _distance),
        (0x05, 0x00): Entry(1, _position),
        (0x83, 0x67): Entry(3, _temperature_with_alarm),
        (0x84, 0x82): Entry(3, _distance_with_alarm),
    },
)

EM310_TILT: Final = Layout(
    "Milesight EM310-TILT",
    {
        **_DEVICE_INFO,
        **_BATTERY,
        (0x03, 0xCF): Entry(7, _angles),
    },
)

AT101: Final = Layout(
    "Milesight AT101",
    {
        **_DEVICE_INFO,
        **_BATTERY,
        (0x03, 0x67): Entry(2, _temperature),
        (0x04, 0x88): Entry(9, _location),
        # The same location, sent on the alarm channel.
        (0x84, 0x88): Entry(9, _location),
        (0x05, 0x00): Entry(1, _position),
        (0x06, 0xD9): Entry(9, _wifi_access_point),
        (0x07, 0x00): Entry(1, _tamper_status),
        (0x83, 0x67): Entry(3, _temperature_with_abnormal_flag),
        (0x20, 0xCE): Entry(12, _stored_location),
    },
)


def em310_udl(payload: bytes, f_port: int | None) -> Decoded:
    """Ultrasonic distance to the waste surface, battery and whether the bin is tilted."""
    return decode_frame(payload, f_port, EM310_UDL)


def em400_udl(payload: bytes, f_port: int | None) -> Decoded:
    """Distance, temperature (the fire proxy), battery and tilt, with threshold-alarm frames."""
    return decode_frame(payload, f_port, EM400_UDL)


def em310_tilt(payload: bytes, f_port: int | None) -> Decoded:
    """Angles of the three axes and which crossed their thresholds (a bin or lid knocked over)."""
    return decode_frame(payload, f_port, EM310_TILT)


def at101(payload: bytes, f_port: int | None) -> Decoded:
    """Tracker: GNSS position or a Wi-Fi scan, motion and geofence status, temperature, battery and tilt."""
    return decode_frame(payload, f_port, AT101)
