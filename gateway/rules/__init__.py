"""Rules: telemetry in, findings out. A rule is a pure function of (reading, its state, now); the engine
feeds readings in device-time order per device and keeps the state, which is stored with each batch.

The registry: every rule kind is one module with a config model (a `kind` tag and a `build(zones,
directory)` method) and a rule class (see `RuleBase` in `model.py` for the contract), listed once in
`KIND_CONFIGS` below; everything else (the loader, the engine, `rules check`) takes the kinds from here.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Annotated, Any, get_args

from pydantic import Field

from gateway.rules.absence import AbsenceConfig
from gateway.rules.collection import CollectionConfig
from gateway.rules.forecast import FillForecastConfig
from gateway.rules.geofence import GeofenceConfig
from gateway.rules.threshold import ThresholdConfig

KIND_CONFIGS = (ThresholdConfig, GeofenceConfig, AbsenceConfig, CollectionConfig, FillForecastConfig)

# The union pydantic validates a rule against, told apart by `kind` (built at run time from the list above).
RuleConfig: Any = Annotated[reduce(or_, KIND_CONFIGS), Field(discriminator="kind")]

# The `kind` tags, from the config models' `kind: Literal[...]`.
KINDS: frozenset[str] = frozenset(get_args(config.model_fields["kind"].annotation)[0] for config in KIND_CONFIGS)

__all__ = ["KINDS", "KIND_CONFIGS", "RuleConfig"]
