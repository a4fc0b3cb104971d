"""OwnTracks JSON (`owntracks/{user}/{device}` and its `/event` sub-topic), dispatched on `_type`.

`location` is a reading (negative `vel`, `cog`, `batt` mean unknown; a fix coarser than
`max_accuracy_m` is stored with `extra.position_inaccurate` so geofence rules can ignore it); `lwt` is a
reading with `event: offline`; `transition` a reading with `event: region_enter|region_leave`; other types
(waypoints, cards, commands…) are counted, not stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.profiles.decoded import Decoded, DecodeError, NotAReading
from gateway.profiles.decoders.json_mapping import JsonMappingConfig, parse_json_object

_UNKNOWN = {"unknown_values": [-1]}
_LOCATION = JsonMappingConfig.model_validate({
    "type": "json_mapping",
    "time": {"path": "tst", "format": "epoch_s"},
    "fields": {
        "lat": "lat", "lon": "lon",
        "speed_kmh": {"path": "vel", **_UNKNOWN},
        "heading_deg": {"path": "cog", **_UNKNOWN},
        "battery_pct": {"path": "batt", **_UNKNOWN},
    },
    "extra": {"accuracy_m": "acc", "altitude_m": "alt", "tracker_id": "tid", "trigger": "t",
              "battery_status": "bs", "region": "desc"},
}).build()


class OwnTracksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["owntracks"]
    max_accuracy_m: float = Field(default=100.0, gt=0)

    def build(self) -> OwnTracksDecoder:
        return OwnTracksDecoder(self)


class OwnTracksDecoder:
    def __init__(self, config: OwnTracksConfig) -> None:
        self.max_accuracy_m = config.max_accuracy_m

    def decode(self, payload: bytes, topic_values: Mapping[str, str]) -> list[Decoded]:
        document = parse_json_object(payload)
        kind = document.get("_type")
        if kind == "lwt":
            # The broker publishes the last will when the phone's connection drops: its `tst` is when
            # that connection was made, so the time of the event is when it arrived.
            return [Decoded({"event": "offline"})]
        if kind == "location":
            return [self._located(document, None)]
        if kind == "transition":
            event = document.get("event")
            if event not in ("enter", "leave"):
                raise DecodeError("payload_mismatch", f"transition event must be enter or leave, got {event!r}")
            return [self._located(document, f"region_{event}")]
        if isinstance(kind, str):
            raise NotAReading(f"owntracks_{kind}")
        raise DecodeError("payload_mismatch", "missing _type")

    def _located(self, document: Mapping[str, Any], event: str | None) -> Decoded:
        record = _LOCATION.map_document(document)
        values = dict(record.values)
        if event:
            values["event"] = event
        extra = dict(record.extra)
        accuracy = extra.get("accuracy_m")
        if isinstance(accuracy, int | float) and accuracy > self.max_accuracy_m:
            extra["position_inaccurate"] = True
        return Decoded(values, record.time, extra=extra)
