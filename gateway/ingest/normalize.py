"""Decoded records → Readings: device checks, time bounds, coordinates and derived fields.

Every check that fails returns a Rejection with a reason code from `REASONS`, so each kind of bad input
has a distinct, countable reason in the dead letter.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gateway.devices import Device, DeviceDirectory
from gateway.events import RawMessage, Reading, Rejection, message_key
from gateway.ingest.frame_counters import FrameCounters
from gateway.profiles.decoders import Decoded
from gateway.profiles.loader import Profile

REASONS = {
    "payload_too_large": "the payload exceeds the configured size limit",
    "invalid_encoding": "the payload is not UTF-8 text",
    "invalid_json": "the payload is not valid JSON",
    "payload_mismatch": "the payload does not match the profile (missing field, wrong type)",
    "bad_timestamp": "the timestamp cannot be read",
    "no_profile": "no device profile claims the topic",
    "unknown_device": "the device is not registered and its profile requires registration",
    "device_id_mismatch": "the device id in the payload differs from the one in the topic",
    "time_in_future": "the device time is further in the future than allowed",
    "time_too_old": "the device time is further in the past than allowed",
    "coordinates_out_of_range": "latitude or longitude outside WGS84 bounds, or only one of them",
    "no_gps_fix": "position 0/0, which trackers send when they have no fix",
    "bad_payload": "the binary payload cannot be decoded by the profile's codec",
    "rate_limited": "more readings of one device within a second of its own clock than any sensor sends; kept here",
    "decoder_error": "the decoder failed unexpectedly on this payload",
    "store_error": "the database refused this message",
}


class Normalizer:
    def __init__(
        self, devices: DeviceDirectory, max_future: timedelta, max_past: timedelta,
        frame_counters: FrameCounters | None = None,
    ) -> None:
        self.devices = devices
        self.max_future = max_future
        self.max_past = max_past
        self.frame_counters = frame_counters or FrameCounters()

    def normalize(
        self, message: RawMessage, profile: Profile, device_id: str, record: Decoded, index: int, now: datetime
    ) -> Reading | Rejection:
        def reject(reason: str, detail: str) -> Rejection:
            return Rejection(message, reason, detail, profile.name, device_id)

        if record.device_id is not None and record.device_id != device_id:
            return reject("device_id_mismatch", f"topic says {device_id!r}, payload says {record.device_id!r}")
        device = self.devices.get(device_id)
        if device is None:
            if profile.config.unknown_devices == "reject":
                return reject("unknown_device", f"{device_id!r} is not registered (profile {profile.name})")
            # Registered in the database with this batch; known to the rules from this reading on.
            device = Device(device_id, profile.name, profile.config.kind)
            self.devices.add(device)

        time = record.time or message.received_at
        if time - now > self.max_future:
            return reject("time_in_future", f"{time.isoformat()} is more than {self.max_future} ahead")
        if now - time > self.max_past:
            return reject("time_too_old", f"{time.isoformat()} is more than {self.max_past} old")

        values: dict[str, Any] = dict(record.values)
        lat, lon = values.get("lat"), values.get("lon")
        if (lat is None) != (lon is None):
            return reject("coordinates_out_of_range", "latitude and longitude must come together")
        if lat is not None:
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # type: ignore[operator]
                return reject("coordinates_out_of_range", f"lat {lat}, lon {lon}")
            if lat == 0 and lon == 0:
                return reject("no_gps_fix", "lat 0, lon 0")

        extra = dict(record.extra)
        f_cnt = extra.get("f_cnt")
        if isinstance(f_cnt, int) and (lost := self.frame_counters.observe(device_id, f_cnt)):
            extra["frames_lost"] = lost
        if values.get("fill_pct") is None and values.get("distance_mm") is not None:
            _derive_fill(values, extra, device, profile)
        elif values.get("fill_pct") is not None and not 0 <= values["fill_pct"] <= 100:
            extra["fill_pct_out_of_range"] = values.pop("fill_pct")

        return Reading(
            device_id=device_id,
            time=time,
            received_at=message.received_at,
            message_key=message_key(message.topic, message.payload, index),
            profile=profile.name,
            extra=extra,
            **values,
        )


def _derive_fill(values: dict[str, Any], extra: dict[str, Any], device: Device | None, profile: Profile) -> None:
    """fill_pct from the sensor's distance to the waste, the bin's depth and the sensor's mounting offset."""
    attributes = device.attributes if device else {}
    depth = attributes.get("bin_depth_mm", profile.config.defaults.bin_depth_mm)
    offset = attributes.get("sensor_offset_mm", profile.config.defaults.sensor_offset_mm)
    if not isinstance(depth, int | float) or depth <= 0:
        extra["fill_pct_unknown"] = "no bin_depth_mm for this device"
        return
    fill = (depth - (values["distance_mm"] - float(offset or 0))) / depth * 100.0
    if 0.0 <= fill <= 100.0:
        values["fill_pct"] = round(fill, 2)
    else:
        # A distance shorter than the offset or longer than the bin is a sensor reading, not a fill level.
        extra["fill_pct_out_of_range"] = round(fill, 2)
