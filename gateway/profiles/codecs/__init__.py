"""Binary payload codecs: the bytes a LoRaWAN device sends, read into canonical fields.

A codec is a small pure function `(payload, f_port) -> Decoded`, where `f_port` is the uplink's LoRaWAN port or
None when the envelope has none. `values` holds only canonical fields in canonical units (`lat`, `lon`,
`temperature_c`, `battery_pct`, `distance_mm`, `tilted`, ...); everything vendor-specific goes to `extra` under a
snake_case name. `time` and `device_id` stay None: the network-server envelope supplies them. Whatever the
bytes, a codec returns a `Decoded` or raises `DecodeError("bad_payload", detail)` with the byte offset in the
detail, and nothing else.

To add a codec: write one module here per payload format (a vendor's format, shared by its devices) with one
function per device, add one line per device to `CODECS`, and test it in `tests/unit/profiles/codecs/` against
the vendor's published byte/value pairs plus random and truncated bytes. Device profiles name a codec by its
key in `CODECS`.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.profiles.codecs import milesight
from gateway.profiles.decoded import Decoded

Codec = Callable[[bytes, int | None], Decoded]

CODECS: dict[str, Codec] = {
    "milesight-em310-udl": milesight.em310_udl,
    "milesight-em400-udl": milesight.em400_udl,
    "milesight-em310-tilt": milesight.em310_tilt,
    "milesight-at101": milesight.at101,
}

__all__ = ["CODECS", "Codec"]
