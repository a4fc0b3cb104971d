"""Rules: telemetry in, findings out. A rule is a pure function of (reading, its state, now); the engine
feeds readings in device-time order per device and keeps the state, which is stored with each batch.

The registry: every rule kind is a config model with a `kind` tag and a `build(zones)` method, listed in
`RuleConfig` below.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.rules.absence import AbsenceConfig
from gateway.rules.collection import CollectionConfig
from gateway.rules.geofence import GeofenceConfig
from gateway.rules.threshold import ThresholdConfig

RuleConfig = Annotated[
    ThresholdConfig | GeofenceConfig | AbsenceConfig | CollectionConfig, Field(discriminator="kind")
]

__all__ = ["RuleConfig"]
