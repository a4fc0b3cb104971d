"""The Things Stack v3 MQTT integration: `v3/{application}@{tenant}/devices/{device_id}/up`, and the
open-source form without `@tenant`. Profile topic: `v3/{application}/devices/{device_id}/#`.

`up` becomes a reading; `join`, `down/…`, `service/data` and `location/solved` are counted, not stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

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


class TheThingsStackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["tts_v3"]
    payload: UplinkPayloadConfig

    def build(self) -> TheThingsStackDecoder:
        return TheThingsStackDecoder(self)


class TheThingsStackDecoder:
    def __init__(self, config: TheThingsStackConfig) -> None:
        self.reader = UplinkPayloadReader(config.payload)

    def decode(self, payload: bytes, topic_values: Mapping[str, str]) -> list[Decoded]:
        event = topic_values.get("#", "up")
        if event != "up":
            raise NotAReading("tts_" + event.replace("/", "_"))
        document = parse_json_object(payload)
        ids = as_object(document.get("end_device_ids"), "end_device_ids") or {}
        payload_device = ids.get("device_id")
        if payload_device is None:
            raise DecodeError("payload_mismatch", "missing end_device_ids.device_id")
        message = as_object(document.get("uplink_message"), "uplink_message")
        if message is None:
            raise DecodeError("payload_mismatch", "missing uplink_message")
        raw_time = document.get("received_at") or message.get("received_at")
        try:
            time = parse_timestamp(raw_time, "iso8601") if raw_time is not None else None
        except TimestampError as exc:
            raise DecodeError("bad_timestamp", str(exc)) from exc
        frm_payload = message.get("frm_payload")  # left out when empty (lorawan-stack#5453)
        uplink = Uplink(
            time=time,
            f_port=as_int(message.get("f_port"), "f_port"),
            f_cnt=as_int(message.get("f_cnt"), "f_cnt", default=0) or 0,  # left out when zero (lorawan-stack#3874)
            data=decode_base64(frm_payload, "frm_payload") if frm_payload not in (None, "") else None,
            server_object=as_object(message.get("decoded_payload"), "decoded_payload"),
            radio=strongest_gateway(message.get("rx_metadata"), "snr"),
        )
        record = self.reader.read(uplink)
        extra = dict(record.extra)
        if dev_eui := ids.get("dev_eui"):
            extra["dev_eui"] = str(dev_eui).lower()
        device_id = None if payload_device == topic_values.get("device_id") else str(payload_device)
        return [Decoded(record.values, record.time, device_id, extra)]

