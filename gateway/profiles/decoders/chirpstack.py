"""ChirpStack's MQTT integration: v4 (`deviceInfo.devEui` hex, `object`) and v3 (`devEUI` base64,
`objectJSON` as a string). Topic: `application/{application_id}/device/{device_id}/event/{event}`.

`up` becomes a reading through the profile's payload settings, `status` a battery reading, `location` a
position; `join`, `ack`, `txack`, `log`, `integration` (and v3's `error`) are counted, not stored.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gateway.profiles.decoded import Decoded, DecodeError, NotAReading
from gateway.profiles.decoders.json_mapping import parse_json_object
from gateway.profiles.decoders.lorawan import (
    Uplink,
    UplinkPayloadConfig,
    UplinkPayloadReader,
    as_int,
    as_object,
    decode_base64,
    strongest_gateway,
)
from gateway.profiles.decoders.timestamps import TimestampError, parse_timestamp

_COUNTED_V4 = {"join", "ack", "txack", "log", "integration"}
_COUNTED_V3 = {"join", "ack", "txack", "error"}


class ChirpStackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["chirpstack_v4", "chirpstack_v3"]
    payload: UplinkPayloadConfig

    def build(self) -> ChirpStackDecoder:
        return ChirpStackDecoder(self)


class ChirpStackDecoder:
    def __init__(self, config: ChirpStackConfig) -> None:
        self.v3 = config.type == "chirpstack_v3"
        self.reader = UplinkPayloadReader(config.payload)

    def decode(self, payload: bytes, topic_values: Mapping[str, str]) -> list[Decoded]:
        event = topic_values.get("event", "up")
        if event in (_COUNTED_V3 if self.v3 else _COUNTED_V4):
            raise NotAReading(f"chirpstack_{event}")
        if event not in ("up", "status", "location"):
            raise DecodeError("payload_mismatch", f"unknown ChirpStack event {event!r}")
        document = parse_json_object(payload)
        device_id = self._device_id(document, topic_values.get("device_id", ""))
        if event == "status":
            record = _status(document, self._time(document))
        elif event == "location":
            record = _location(document, self._time(document))
        else:
            record = self.reader.read(self._uplink(document))
        return [Decoded(record.values, record.time, device_id, record.extra)]

    def _device_id(self, document: Mapping[str, Any], topic_device: str) -> str | None:
        """The payload's DevEUI as lowercase hex; None when it agrees with the topic."""
        if self.v3:
            raw = document.get("devEUI")
            if raw is None:
                raise DecodeError("payload_mismatch", "missing devEUI")
            try:
                eui = base64.b64decode(str(raw), validate=True).hex()
            except (binascii.Error, ValueError):
                raise DecodeError("payload_mismatch", f"devEUI is not base64: {raw!r}") from None
        else:
            info = as_object(document.get("deviceInfo"), "deviceInfo") or {}
            if "devEui" not in info:
                raise DecodeError("payload_mismatch", "missing deviceInfo.devEui")
            eui = str(info["devEui"]).lower()
        return None if eui == topic_device.lower() else eui

    def _time(self, document: Mapping[str, Any]) -> datetime | None:
        raw = document.get("time")
        if raw is None:
            # v3 and some v4 events have only the gateways' receive times
            rx_info = document.get("rxInfo")
            if isinstance(rx_info, list) and rx_info and isinstance(rx_info[0], dict):
                raw = rx_info[0].get("time")
        if raw is None:
            return None
        try:
            return parse_timestamp(raw, "iso8601")
        except TimestampError as exc:
            raise DecodeError("bad_timestamp", str(exc)) from exc

    def _uplink(self, document: Mapping[str, Any]) -> Uplink:
        data = document.get("data")
        if self.v3:
            raw_object = document.get("objectJSON")
            try:
                server_object = json.loads(raw_object) if isinstance(raw_object, str) and raw_object else None
            except json.JSONDecodeError:
                raise DecodeError("payload_mismatch", "objectJSON is not JSON") from None
        else:
            server_object = document.get("object")
        return Uplink(
            time=self._time(document),
            f_port=as_int(document.get("fPort"), "fPort"),
            f_cnt=as_int(document.get("fCnt"), "fCnt", default=0) or 0,  # left out when zero (chirpstack#43)
            data=decode_base64(data, "data") if data not in (None, "") else None,
            server_object=as_object(server_object, "object"),
            radio=strongest_gateway(document.get("rxInfo"), "loRaSNR" if self.v3 else "snr"),
        )


def _status(document: Mapping[str, Any], time: datetime | None) -> Decoded:
    values: dict[str, Any] = {}
    level = document.get("batteryLevel")
    unavailable = document.get("batteryLevelUnavailable") or document.get("externalPowerSource")
    if isinstance(level, int | float) and not isinstance(level, bool) and not unavailable:
        values["battery_pct"] = float(level)
    extra = {key: document[key] for key in ("margin", "externalPowerSource") if key in document}
    return Decoded(values, time, extra=extra)


def _location(document: Mapping[str, Any], time: datetime | None) -> Decoded:
    location = as_object(document.get("location"), "location") or {}
    lat, lon = location.get("latitude"), location.get("longitude")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        raise DecodeError("payload_mismatch", "location event without latitude/longitude")
    extra = {f"location_{key}": location[key] for key in ("altitude", "source", "accuracy") if key in location}
    return Decoded({"lat": float(lat), "lon": float(lon)}, time, extra=extra)
