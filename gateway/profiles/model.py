"""A device profile: which topics a kind of device publishes on and how to read what it sends."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.profiles.decoders import DecoderConfig
from gateway.profiles.topics import TopicPattern, TopicPatternError


class ProfileDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    expected_interval_s: int | None = Field(default=None, gt=0, description="how often a device reports")
    bin_depth_mm: float | None = Field(default=None, gt=0, description="used when a device has none of its own")
    sensor_offset_mm: float = Field(default=0.0, ge=0)


class ProfileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    kind: str = Field(min_length=1, description="device kind: truck, container, …")
    topic: str
    # How the device id is built when it is not one topic level, e.g. "{user}/{device}" for OwnTracks.
    device_id: str | None = None
    decoder: DecoderConfig
    unknown_devices: Literal["accept", "reject"] = "accept"
    defaults: ProfileDefaults = Field(default_factory=ProfileDefaults)

    @model_validator(mode="after")
    def _valid_topic(self) -> ProfileConfig:
        try:
            pattern = TopicPattern.parse(self.topic, require_device_id=self.device_id is None)
        except TopicPatternError as exc:
            raise ValueError(f"topic: {exc}") from exc
        if self.device_id is not None:
            used = set(re.findall(r"\{(\w+)\}", self.device_id))
            missing = used - {name for name in pattern.names if name}
            if not used or missing:
                raise ValueError(f"device_id {self.device_id!r} must be built from the topic's placeholders")
        return self

    def device_id_for(self, topic_values: Mapping[str, str]) -> str:
        if self.device_id is None:
            return topic_values["device_id"]
        return self.device_id.format_map(topic_values)
