"""The frozen objects that pass between stages: RawMessage → Reading | Rejection.

They are plain immutable records, not pydantic models: validation happens where the data enters
(decoders, normalize), not here. The three built for every MQTT message (AckToken, RawMessage, Reading)
are named tuples, which build three times faster than frozen dataclasses (a Reading: 1.0 against 3.5 µs);
the rarer ones are frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

EMPTY: Mapping[str, Any] = MappingProxyType({})


class AckToken(NamedTuple):
    """What the source needs to acknowledge one message: the connection it came on and its packet id."""

    connection: int
    mid: int
    qos: int


class RawMessage(NamedTuple):
    topic: str
    payload: bytes
    received_at: datetime
    ack: AckToken | None = None


# The canonical optional fields of a Reading, in the order of the telemetry table's columns.
CANONICAL_FIELDS: tuple[str, ...] = (
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "fill_pct",
    "distance_mm",
    "temperature_c",
    "battery_pct",
    "battery_v",
    "tilted",
    "weight_kg",
    "rfid",
    "event",
)


class Reading(NamedTuple):
    """One observation of one device at one device time, in canonical units."""

    device_id: str
    time: datetime
    received_at: datetime
    message_key: bytes
    profile: str
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    fill_pct: float | None = None
    distance_mm: float | None = None
    temperature_c: float | None = None
    battery_pct: float | None = None
    battery_v: float | None = None
    tilted: bool | None = None
    weight_kg: float | None = None
    rfid: str | None = None
    event: str | None = None
    extra: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule concluded: open (or repeat) or resolve the incident of one cause (rule, subject)."""

    rule_id: str
    subject: str
    action: str  # "open" (or count one more occurrence) | "escalate" (a higher severity) | "resolve"
    time: datetime
    service_code: str
    severity: str = "minor"
    title: str = ""
    description: str = ""
    device_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    @property
    def dedupe_key(self) -> str:
        return f"{self.rule_id}:{self.subject}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that could not become a Reading, with the reason it goes to the dead letter."""

    message: RawMessage
    reason: str
    detail: str
    profile: str | None = None
    device_id: str | None = None
