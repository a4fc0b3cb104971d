"""What every LoRaWAN network server's uplink has in common, and how its application payload becomes
canonical fields: with a binary codec from `gateway/profiles/codecs/`, or by mapping the object the
network server's own payload formatter produced (`object`, `objectJSON`, `decoded_payload`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from gateway.profiles.codecs import CODECS
from gateway.profiles.decoded import Decoded, DecodeError
from gateway.profiles.decoders.json_mapping import JsonMappingConfig


@dataclass(frozen=True, slots=True)
class Uplink:
    time: datetime | None
    f_port: int | None
    f_cnt: int
    data: bytes | None
    server_object: Mapping[str, Any] | None
    radio: Mapping[str, Any] = field(default_factory=dict)


class UplinkPayloadConfig(BaseModel):
    """How the application payload of an uplink is read.

    `codec` decodes the raw bytes; `server_object` trusts the network server's decoder instead, when the
    uplink carries a decoded object (the codec, if any, is the fallback when it does not).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    codec: str | None = None
    # `fields` / `extra` of the network server's decoded object, written as in a json_mapping decoder.
    server_object: JsonMappingConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _server_object_is_a_json_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("server_object"), dict):
            data = {**data, "server_object": {"type": "json_mapping", **data["server_object"]}}
        return data

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, value: str | None) -> str | None:
        if value is not None and value not in CODECS:
            raise ValueError(f"unknown codec {value!r} (known: {', '.join(sorted(CODECS))})")
        return value

    @model_validator(mode="after")
    def _something_to_decode_with(self) -> UplinkPayloadConfig:
        if self.codec is None and self.server_object is None:
            raise ValueError("give a codec, a server_object mapping, or both")
        return self


class UplinkPayloadReader:
    def __init__(self, config: UplinkPayloadConfig) -> None:
        self.codec = CODECS[config.codec] if config.codec else None
        self.object_mapping = config.server_object.build() if config.server_object else None

    def read(self, uplink: Uplink) -> Decoded:
        if self.object_mapping is not None and uplink.server_object is not None:
            decoded = self.object_mapping.map_document(uplink.server_object)
        elif self.codec is not None and uplink.data:
            decoded = self.codec(uplink.data, uplink.f_port)
        elif not uplink.data:
            decoded = Decoded(values={})  # an empty uplink still says the device is alive
        else:
            raise DecodeError("payload_mismatch", "the uplink has no decoded object and the profile has no codec")
        extra = {**decoded.extra, "f_cnt": uplink.f_cnt, **uplink.radio}
        if uplink.f_port is not None:
            extra["f_port"] = uplink.f_port
        return Decoded(values=decoded.values, time=uplink.time, extra=extra)


def decode_base64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise DecodeError("payload_mismatch", f"{what} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("bad_payload", f"{what} is not valid base64: {value[:40]!r}") from exc


def as_int(value: Any, what: str, default: int | None = None) -> int | None:
    """LoRaWAN envelopes leave out zero values and sometimes send numbers as strings."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise DecodeError("payload_mismatch", f"{what} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise DecodeError("payload_mismatch", f"{what} must be an integer, got {value!r}")


def as_object(value: Any, what: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodeError("payload_mismatch", f"{what} must be a JSON object")
    return value


def strongest_gateway(receptions: Any, snr_key: str) -> dict[str, Any]:
    """RSSI and SNR at the gateway that heard the uplink best, and how many gateways heard it."""
    if not isinstance(receptions, list) or not receptions:
        return {}
    heard = [rx for rx in receptions if isinstance(rx, dict)]
    if not heard:
        return {}
    best = max(heard, key=_rssi)
    radio = {"rssi": best.get("rssi"), "snr": best.get(snr_key), "gateways": len(receptions)}
    return {key: value for key, value in radio.items() if value is not None}


def _rssi(reception: dict[str, Any]) -> float:
    value = reception.get("rssi")
    return float(value) if isinstance(value, int | float) else -999.0
