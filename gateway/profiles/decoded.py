"""What every decoder and codec returns and raises (outside both packages, which import it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Decoded:
    """One record decoded from a payload, before device-specific normalization.

    `time` is None when the payload carries no timestamp; `device_id` is None when only the topic names it.
    """

    values: Mapping[str, Any]
    time: datetime | None = None
    device_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class DecodeError(Exception):
    """A payload this decoder cannot read. `reason` is a short code stored in the dead letter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NotAReading(Exception):
    """A recognised message that carries no reading (a join, an ack, a waypoint…): counted by `kind`,
    acknowledged, and not stored."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Decoder(Protocol):
    def decode(self, payload: bytes, topic_values: Mapping[str, str]) -> list[Decoded]: ...
