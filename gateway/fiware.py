"""A device's latest state as a FIWARE Smart Data Models entity, in NGSI-LD key-values form.

- A street container becomes a `WasteContainer` (dataModel.WasteManagement).
- A collection truck becomes a `Vehicle` (dataModel.Transportation).

The functions are pure: a registry `Device` and its latest `Reading` (or None) in, a JSON-ready dict out,
ready to be sent with `Content-Type: application/ld+json` to an NGSI-LD broker (e.g. `POST /ngsi-ld/v1/entities`
or an upsert through `/ngsi-ld/v1/entityOperations/upsert?options=update`).

Rules shared by both models:
- `id` is `urn:ngsi-ld:<Type>:<device_id>`; characters of the device id that are neither URN- nor
  NGSI-identifier-safe are percent-encoded.
- `location` is a GeoJSON Point, coordinates in **[lon, lat]** order.
- Times are ISO 8601 in UTC with a `Z` suffix (a naive datetime is taken as UTC, as Wastegate stores them).
- A property whose value is unknown (no reading, field absent, NaN, out of the model's range) is left out;
  no property is ever sent as null.
- `@context` is the one the Smart Data Models NGSI-LD key-values examples (`example.jsonld`) use.

`WasteContainer` choices (the property names are the ones the 0.3.0 schema or its examples define):
- `fillingLevel` is a 0..1 ratio: Wastegate's `fill_pct` (0-100) / 100, clamped, rounded to 4 decimals.
- `status` (see `container_status`): `unknown` without a reading; else `burning` when the temperature
  reaches the fire threshold; else `dropped` when the sensor reports the bin tilted; else `ok`.
  Burning wins over dropped: a bin on fire needs the fire brigade whether or not it fell over.
  `lidOpen`, `moved` and `vandalized` are never derived: Wastegate's readings carry nothing that says so.
- The reading's time goes to `binLoggedTime` ("time when the bin's level was last logged"), the schema's
  date-time for an observation; `dateObserved` is not a WasteContainer property.
- The device's `capacity_l` attribute goes to `binCapacity` (litres; the schema's volume capacity:
  `cargoVolume` belongs to `WasteContainerModel`, not to the container), `waste_kind` to `storedWasteKind`
  (mapped onto the schema's enum, `other` when it fits none of it), the reading's `weight_kg` to `cargoWeight`.
- The sensor's battery is not exported: neither the WasteContainer schema nor its examples have a property
  for it (in Smart Data Models it belongs to the sensor's own `Device` entity).

`Vehicle` choices:
- Always `vehicleType: lorry`, `category: [municipalServices]`, `serviceProvided: [garbageCollection]`.
- `speed` (km/h) and `bearing` (degrees clockwise from north) from the reading; negative values, which
  trackers send for "unknown", are left out. `battery` is a 0..1 ratio of `battery_pct`.
- `cargoWeight` only for a weight that is not a bin lift's: the truck profile's `weight_kg` on a
  `bin_lift` event is the weight of the lifted bin (a `WasteObserved` fact), not the truck's load.
  The Vehicle schema also requires it to be > 0.
- `ignitionStatus` from the reading's `extra["ignition"]` when it is a boolean;
  `vehiclePlateIdentifier` from the device's `plate` attribute.
- A truck's `location` only ever comes from its reading: a registry position (a depot) would put a
  moving truck in the wrong place. With no position, `LocationUnknownError` is raised.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from gateway.devices import Device
from gateway.events import Reading

# The @context of the Smart Data Models NGSI-LD key-values examples (WasteContainer/examples/example.jsonld
# in dataModel.WasteManagement, Vehicle/examples/example.jsonld in dataModel.Transportation).
WASTE_MANAGEMENT_CONTEXT: Final = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.WasteManagement/master/context.jsonld"
)
TRANSPORTATION_CONTEXT: Final = "https://smart-data-models.github.io/dataModel.Transportation/context.jsonld"

DEFAULT_FIRE_TEMPERATURE_C: Final = 60.0

CONTAINER_STATUSES: Final = ("ok", "lidOpen", "dropped", "moved", "vandalized", "burning", "unknown")

# The WasteContainer schema's `storedWasteKind` enum.
STORED_WASTE_KINDS: Final = frozenset({
    "organic", "inorganic", "glass", "oil", "plastic", "metal", "paper", "batteries", "electronics",
    "hazardous", "other",
})
_WASTE_KIND_SYNONYMS: Final = {
    "bio": "organic",
    "biowaste": "organic",
    "food": "organic",
    "cardboard": "paper",
    "paper_cardboard": "paper",
    "plastics": "plastic",
    "metals": "metal",
    "battery": "batteries",
    "weee": "electronics",
    "e-waste": "electronics",
}

# Besides letters, digits and "_.-~" (which quote() never encodes): characters that are valid in a URN's
# namespace-specific string and in the Smart Data Models entity-identifier pattern alike.
_ID_SAFE: Final = "!$*+,:@"


class LocationUnknownError(ValueError):
    """The entity would have no `location`, which both WasteContainer and Vehicle require."""


def entity_id(entity_type: str, device_id: str) -> str:
    """`urn:ngsi-ld:<entity_type>:<device_id>`, the device id percent-encoded where it is not URN-safe."""
    return f"urn:ngsi-ld:{entity_type}:{quote(device_id, safe=_ID_SAFE)}"


def container_status(latest: Reading | None, *, fire_temperature_c: float = DEFAULT_FIRE_TEMPERATURE_C) -> str:
    """The WasteContainer `status` for a latest reading, by precedence: unknown, burning, dropped, ok.

    - `unknown`: no reading yet.
    - `burning`: the reading's temperature is at or above `fire_temperature_c`.
    - `dropped`: the sensor reports the container tilted.
    - `ok`: any other reading, including one that carries neither a temperature nor a tilt flag.
    """
    if latest is None:
        return "unknown"
    temperature = _finite(latest.temperature_c)
    if temperature is not None and temperature >= fire_temperature_c:
        return "burning"
    if latest.tilted:
        return "dropped"
    return "ok"


def stored_waste_kind(waste_kind: object) -> str | None:
    """A device's `waste_kind` attribute as a `storedWasteKind` enum value; None when there is none.

    Case-insensitive; a few common synonyms map onto the enum; any other kind (e.g. `mixed`) is `other`.
    """
    if not isinstance(waste_kind, str) or not waste_kind.strip():
        return None
    key = waste_kind.strip().lower().replace(" ", "_")
    if key in STORED_WASTE_KINDS:
        return key
    return _WASTE_KIND_SYNONYMS.get(key, "other")


def waste_container_entity(
    device: Device,
    latest: Reading | None,
    *,
    fire_temperature_c: float = DEFAULT_FIRE_TEMPERATURE_C,
) -> dict[str, Any]:
    """A street container and its latest reading (None: none yet) as a `WasteContainer` entity.

    `location` is the reading's position when it has one, else the device's registered place; raises
    `LocationUnknownError` when there is neither, and `ValueError` when the reading is another device's.
    """
    _check_same_device(device, latest)
    position = _position(latest) or _point(device.lat, device.lon)
    if position is None:
        raise LocationUnknownError(f"container {device.device_id!r} has no registered place and no position")

    entity: dict[str, Any] = {"id": entity_id("WasteContainer", device.device_id), "type": "WasteContainer"}
    if device.name:
        entity["name"] = device.name
    entity["location"] = position
    if latest is not None:
        fill_pct = _finite(latest.fill_pct)
        if fill_pct is not None:
            entity["fillingLevel"] = round(min(max(fill_pct / 100.0, 0.0), 1.0), 4)
        temperature = _finite(latest.temperature_c)
        if temperature is not None:
            entity["temperature"] = temperature
        weight = _finite(latest.weight_kg)
        if weight is not None and weight >= 0:
            entity["cargoWeight"] = weight
    entity["status"] = container_status(latest, fire_temperature_c=fire_temperature_c)
    if latest is not None:
        entity["binLoggedTime"] = _iso(latest.time)
    capacity = _number(device.attributes.get("capacity_l"))
    if capacity is not None and capacity >= 0:
        entity["binCapacity"] = capacity
    kind = stored_waste_kind(device.attributes.get("waste_kind"))
    if kind is not None:
        entity["storedWasteKind"] = kind
    entity["@context"] = [WASTE_MANAGEMENT_CONTEXT]
    return entity


def vehicle_entity(device: Device, latest: Reading | None) -> dict[str, Any]:
    """A collection truck and its latest reading as a `Vehicle` entity.

    Raises `LocationUnknownError` when the reading is missing or has no position (export the latest
    reading that has one), and `ValueError` when the reading is another device's.
    """
    _check_same_device(device, latest)
    position = _position(latest)
    if latest is None or position is None:
        raise LocationUnknownError(f"truck {device.device_id!r} has no reading with a position")

    entity: dict[str, Any] = {
        "id": entity_id("Vehicle", device.device_id),
        "type": "Vehicle",
        "vehicleType": "lorry",
        "category": ["municipalServices"],
        "serviceProvided": ["garbageCollection"],
    }
    if device.name:
        entity["name"] = device.name
    plate = device.attributes.get("plate")
    if isinstance(plate, str | int) and not isinstance(plate, bool) and str(plate).strip():
        entity["vehiclePlateIdentifier"] = str(plate).strip()
    entity["location"] = position
    speed = _finite(latest.speed_kmh)
    if speed is not None and speed >= 0:
        entity["speed"] = speed
    bearing = _finite(latest.heading_deg)
    if bearing is not None and bearing >= 0:
        entity["bearing"] = bearing % 360.0
    weight = _finite(latest.weight_kg)
    if weight is not None and weight > 0 and latest.event != "bin_lift":
        entity["cargoWeight"] = weight
    battery = _finite(latest.battery_pct)
    if battery is not None:
        entity["battery"] = round(min(max(battery / 100.0, 0.0), 1.0), 4)
    ignition = latest.extra.get("ignition")
    if isinstance(ignition, bool):
        entity["ignitionStatus"] = ignition
    entity["observationDateTime"] = _iso(latest.time)
    entity["@context"] = [TRANSPORTATION_CONTEXT]
    return entity


def device_entity(
    device: Device,
    latest: Reading | None,
    *,
    fire_temperature_c: float = DEFAULT_FIRE_TEMPERATURE_C,
) -> dict[str, Any]:
    """The entity for a device by its kind: `container` → WasteContainer, `truck` → Vehicle.

    Raises `ValueError` for any other kind (no Smart Data Model is mapped for it).
    """
    if device.kind == "container":
        return waste_container_entity(device, latest, fire_temperature_c=fire_temperature_c)
    if device.kind == "truck":
        return vehicle_entity(device, latest)
    raise ValueError(f"no FIWARE entity for device kind {device.kind!r} (device {device.device_id!r})")


def _check_same_device(device: Device, latest: Reading | None) -> None:
    if latest is not None and latest.device_id != device.device_id:
        raise ValueError(f"reading of {latest.device_id!r} given for device {device.device_id!r}")


def _position(latest: Reading | None) -> dict[str, Any] | None:
    return None if latest is None else _point(latest.lat, latest.lon)


def _point(lat: float | None, lon: float | None) -> dict[str, Any] | None:
    """A GeoJSON Point, [lon, lat]; None unless both are known and within WGS84 bounds."""
    lat, lon = _finite(lat), _finite(lon)
    if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return {"type": "Point", "coordinates": [lon, lat]}


def _finite(value: float | None) -> float | None:
    """The value as a float, or None when it is unknown: None, NaN or infinite."""
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _number(value: object) -> float | int | None:
    """A registry attribute as a JSON number; None unless it is a finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _iso(time: datetime) -> str:
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.astimezone(UTC).isoformat().replace("+00:00", "Z")

