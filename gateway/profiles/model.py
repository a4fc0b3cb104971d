"""A device profile: which topics a kind of device publishes on and how to read what it sends."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    decoder: DecoderConfig
    unknown_devices: Literal["accept", "reject"] = "accept"
    defaults: ProfileDefaults = Field(default_factory=ProfileDefaults)

    @field_validator("topic")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        try:
            TopicPattern.parse(value)
        except TopicPatternError as exc:
            raise ValueError(str(exc)) from exc
        return value
