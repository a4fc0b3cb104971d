"""FIWARE Smart Data Models export: WasteContainer and Vehicle entities, NGSI-LD key-values.

Entities are checked against the vendored WasteContainer schema (its remote `$ref`s served from a local
stand-in, see data/fiware/SOURCE.md) and against the upstream example entities' property names and value types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from gateway.devices import Device
from gateway.events import Reading
from gateway.fiware import (
    CONTAINER_STATUSES,
    TRANSPORTATION_CONTEXT,
    WASTE_MANAGEMENT_CONTEXT,
    LocationUnknownError,
    container_status,
    device_entity,
    entity_id,
    stored_waste_kind,
    vehicle_entity,
    waste_container_entity,
)

DATA = Path(__file__).parent / "data" / "fiware"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


SCHEMA = load("WasteContainer.schema.json")
COMMON = load("common-schema.local.json")
WC_EXAMPLE = load("WasteContainer.example.json")
WC_EXAMPLE_2020 = load("WasteContainer.example.v1-2020-commit4e23ab2.json")
VEHICLE_EXAMPLE = load("Vehicle.example.json")

# The schema's remote $refs are served by this registry, never fetched: with an explicit registry,
# jsonschema raises on a reference the registry does not hold.
REGISTRY: Registry[Any] = Registry().with_resource(COMMON["$id"], Resource.from_contents(COMMON))

# jsonschema checks "date-time" and "uri" only with optional packages installed; these two checks make the
# formats the schemas use count without them.
FORMATS = FormatChecker(formats=())
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*")


def is_date_time(value: object) -> bool:
    """RFC 3339 date-time: the shape, then the calendar and clock ranges."""
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    date, clock, _, offset = match.groups()
    datetime.fromisoformat(f"{date}T{clock}{'+00:00' if offset in 'Zz' else offset}")
    return True


def is_uri(value: object) -> bool:
    """RFC 3986 absolute URI: a scheme, then only unreserved, reserved or percent-encoded characters."""
    return not isinstance(value, str) or _URI.fullmatch(value) is not None


FORMATS.checks("date-time", raises=ValueError)(is_date_time)
FORMATS.checks("uri")(is_uri)
VALIDATOR = Draft202012Validator(SCHEMA, registry=REGISTRY, format_checker=FORMATS)

T0 = datetime(2026, 11, 23, 8, 15, 2, tzinfo=UTC)

CONTAINER = Device(
    "C-0001", "container", "container", "Carrer de Mallorca 401", 41.4036, 2.1744,
    MappingProxyType({"bin_depth_mm": 1200, "sensor_offset_mm": 100, "capacity_l": 3200, "waste_kind": "paper"}),
)
BARE_CONTAINER = Device("C-0002", "container", "container", None, 41.399, 2.17)
TRUCK = Device("T1", "truck", "truck", "Truck 1", attributes=MappingProxyType({"plate": "1234 KLM"}))


def reading(device_id: str = "C-0001", **values: Any) -> Reading:
    return Reading(device_id=device_id, time=T0, received_at=T0 + timedelta(seconds=1), message_key=b"k",
                   profile="test", **values)


FULL_CONTAINER_READING = reading(fill_pct=57.3, distance_mm=612.0, temperature_c=18.5, battery_pct=87.0,
                                 battery_v=3.6, tilted=False, weight_kg=41.0)
FULL_TRUCK_READING = reading("T1", lat=41.387, lon=2.17, speed_kmh=23.5, heading_deg=270.0, battery_pct=81.0,
                             weight_kg=3140.0, extra=MappingProxyType({"ignition": True}))


def container_entities() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "full reading", waste_container_entity(CONTAINER, FULL_CONTAINER_READING)
    yield "no reading", waste_container_entity(CONTAINER, None)
    yield "bare device, no reading", waste_container_entity(BARE_CONTAINER, None)
    yield "reading with its own position", waste_container_entity(
        CONTAINER, reading(lat=41.41, lon=2.18, fill_pct=0.0))
    yield "burning", waste_container_entity(CONTAINER, reading(temperature_c=75.0, fill_pct=100.0))
    yield "dropped", waste_container_entity(CONTAINER, reading(tilted=True))


def schema_errors(entity: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(entity)'}: {e.message}"
            for e in VALIDATOR.iter_errors(entity)]


def schema_property_names(schema: dict[str, Any]) -> set[str]:
    """Every property name the schema defines, its allOf's $refs resolved through the registry."""
    resolver = REGISTRY.resolver(base_uri=schema["$id"])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        if "$ref" in part:
            part = resolver.lookup(part["$ref"]).contents
        names |= set(part.get("properties", {}))
    return names


def json_shape(value: Any) -> Any:
    """A value's JSON type, recursively: objects by key, arrays by the set of their items' shapes."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return ("array", frozenset(json.dumps(json_shape(v), sort_keys=True) for v in value))
    if isinstance(value, dict):
        return {k: json_shape(v) for k, v in value.items()}
    return type(value).__name__


def nulls(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path or "(entity)"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nulls(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}/{i}")]
    return []


# --- the schema and its local resolution ------------------------------------------------------------------


def test_every_ref_in_the_schema_resolves_locally() -> None:
    refs: list[tuple[str, str]] = []

    def walk(node: Any, base: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append((base, node["$ref"]))
            for value in node.values():
                walk(value, base)
        elif isinstance(node, list):
            for value in node:
                walk(value, base)

    walk(SCHEMA, SCHEMA["$id"])
    walk(COMMON, COMMON["$id"])
    assert len(refs) >= 5
    for base, ref in refs:
        REGISTRY.resolver(base_uri=base).lookup(ref)  # raises Unresolvable for anything not served locally


@pytest.mark.parametrize(("change", "where"), [
    ({"fillingLevel": 57.3}, "fillingLevel"),
    ({"status": "onFire"}, "status"),
    ({"storedWasteKind": "mixed"}, "storedWasteKind"),
    ({"location": {"type": "Point"}}, "location"),
    ({"location": {"type": "Point", "coordinates": ["2.17", "41.40"]}}, "location/coordinates/0"),
    ({"id": "urn:ngsi-ld:WasteContainer:has space"}, "id"),
    ({"name": 42}, "name"),
    ({"type": "Vehicle"}, "type"),
    ({"binLoggedTime": "yesterday"}, "binLoggedTime"),
    ({"binLoggedTime": "2026-13-01T00:00:00Z"}, "binLoggedTime"),
    ({"binLoggedTime": "2026-11-23T08:15:02"}, "binLoggedTime"),
])
def test_the_validator_catches_a_wrong_entity(change: dict[str, Any], where: str) -> None:
    """The checks below rely on the validator: it must see schema and common-schema constraints alike."""
    entity = waste_container_entity(CONTAINER, FULL_CONTAINER_READING)
    assert schema_errors(entity) == []
    errors = schema_errors({**entity, **change})
    assert any(e.startswith(where) for e in errors), errors


def test_the_validator_requires_a_location() -> None:
    entity = waste_container_entity(CONTAINER, FULL_CONTAINER_READING)
    del entity["location"]
    assert schema_errors(entity) == ["(entity): 'location' is a required property"]


# --- WasteContainer against the schema and the examples --------------------------------------------------


@pytest.mark.parametrize(("case", "entity"), list(container_entities()), ids=[c for c, _ in container_entities()])
def test_container_entities_validate_against_the_schema(case: str, entity: dict[str, Any]) -> None:
    assert schema_errors(entity) == []


@pytest.mark.parametrize(("case", "entity"), list(container_entities()), ids=[c for c, _ in container_entities()])
def test_container_property_names_are_the_models(case: str, entity: dict[str, Any]) -> None:
    known = set(WC_EXAMPLE) | set(WC_EXAMPLE_2020) | schema_property_names(SCHEMA) | {"@context"}
    assert set(entity) - known == set()


def test_container_value_types_match_the_examples() -> None:
    entity = waste_container_entity(CONTAINER, FULL_CONTAINER_READING)
    examples = {**WC_EXAMPLE_2020, **WC_EXAMPLE}
    shared = set(entity) & set(examples)
    # Checked against an example: the observation and the location; the rest is typed by the schema.
    assert {"id", "type", "location", "fillingLevel", "temperature", "status", "binLoggedTime",
            "binCapacity"} <= shared
    for name in shared:
        assert json_shape(entity[name]) == json_shape(examples[name]), name


def test_container_exact_entity_for_a_full_reading() -> None:
    assert waste_container_entity(CONTAINER, FULL_CONTAINER_READING) == {
        "id": "urn:ngsi-ld:WasteContainer:C-0001",
        "type": "WasteContainer",
        "name": "Carrer de Mallorca 401",
        "location": {"type": "Point", "coordinates": [2.1744, 41.4036]},
        "fillingLevel": 0.573,
        "temperature": 18.5,
        "cargoWeight": 41.0,
        "status": "ok",
        "binLoggedTime": "2026-11-23T08:15:02Z",
        "binCapacity": 3200,
        "storedWasteKind": "paper",
        "@context": [WASTE_MANAGEMENT_CONTEXT],
    }


def test_container_without_a_reading_yet() -> None:
    entity = waste_container_entity(CONTAINER, None)
    assert entity == {
        "id": "urn:ngsi-ld:WasteContainer:C-0001",
        "type": "WasteContainer",
        "name": "Carrer de Mallorca 401",
        "location": {"type": "Point", "coordinates": [2.1744, 41.4036]},
        "status": "unknown",
        "binCapacity": 3200,
        "storedWasteKind": "paper",
        "@context": [WASTE_MANAGEMENT_CONTEXT],
    }
    assert set(waste_container_entity(BARE_CONTAINER, None)) == {"id", "type", "location", "status", "@context"}


def test_container_location_is_lon_lat_from_the_reading_else_the_registered_place() -> None:
    assert waste_container_entity(CONTAINER, reading(fill_pct=10.0))["location"] == {
        "type": "Point", "coordinates": [CONTAINER.lon, CONTAINER.lat]}
    moved = waste_container_entity(CONTAINER, reading(lat=41.41, lon=2.18))
    assert moved["location"]["coordinates"] == [2.18, 41.41]
    # The examples are in Galicia and Guadalajara: longitude west (negative) first, latitude 40-43 second.
    for example in (WC_EXAMPLE, WC_EXAMPLE_2020, VEHICLE_EXAMPLE):
        lon, lat = example["location"]["coordinates"]
        assert lon < 0 < 40 < lat < 43


def test_container_without_any_place_cannot_be_exported() -> None:
    nowhere = Device("C-9", "container", "container")
    with pytest.raises(LocationUnknownError, match="C-9"):
        waste_container_entity(nowhere, reading("C-9", fill_pct=50.0))
    assert waste_container_entity(nowhere, reading("C-9", lat=41.0, lon=2.0))["location"]["coordinates"] == [2.0, 41.0]


@pytest.mark.parametrize(("fill_pct", "level"), [(0.0, 0.0), (57.3, 0.573), (80.0, 0.8), (100.0, 1.0),
                                                 (33.33, 0.3333), (104.0, 1.0), (-2.0, 0.0)])
def test_filling_level_is_a_ratio(fill_pct: float, level: float) -> None:
    entity = waste_container_entity(CONTAINER, reading(fill_pct=fill_pct))
    assert entity["fillingLevel"] == level
    assert schema_errors(entity) == []


@pytest.mark.parametrize(("latest", "expected"), [
    (None, "unknown"),
    (reading(), "ok"),
    (reading(fill_pct=20.0, temperature_c=21.0, tilted=False), "ok"),
    (reading(temperature_c=59.9), "ok"),
    (reading(temperature_c=60.0), "burning"),
    (reading(temperature_c=300.0), "burning"),
    (reading(tilted=True), "dropped"),
    (reading(tilted=True, temperature_c=20.0), "dropped"),
    (reading(tilted=True, temperature_c=61.0), "burning"),
    (reading(temperature_c=float("nan")), "ok"),
])
def test_container_status(latest: Reading | None, expected: str) -> None:
    assert expected in CONTAINER_STATUSES
    assert container_status(latest) == expected
    entity = waste_container_entity(CONTAINER, latest)
    assert entity["status"] == expected
    assert schema_errors(entity) == []


def test_fire_threshold_is_configurable() -> None:
    warm = reading(temperature_c=45.0)
    assert waste_container_entity(CONTAINER, warm)["status"] == "ok"
    assert waste_container_entity(CONTAINER, warm, fire_temperature_c=45.0)["status"] == "burning"
    assert container_status(warm, fire_temperature_c=50.0) == "ok"


def test_unknown_values_are_left_out_not_null() -> None:
    only_fill = waste_container_entity(CONTAINER, reading(fill_pct=12.5))
    assert {"temperature", "cargoWeight"} & set(only_fill) == set()
    nan = waste_container_entity(CONTAINER, reading(fill_pct=float("nan"), temperature_c=float("inf")))
    assert {"fillingLevel", "temperature"} & set(nan) == set()
    odd = Device("C-3", "container", "container", "", 41.0, 2.0,
                 MappingProxyType({"capacity_l": "big", "waste_kind": ""}))
    assert set(waste_container_entity(odd, None)) == {"id", "type", "location", "status", "@context"}
    truck = vehicle_entity(Device("T2", "truck", "truck"), reading("T2", lat=41.0, lon=2.0, speed_kmh=-1.0,
                                                                   heading_deg=-1.0))
    assert {"speed", "bearing", "cargoWeight", "battery", "name", "vehiclePlateIdentifier",
            "ignitionStatus"} & set(truck) == set()
    entities = [e for _, e in container_entities()] + [truck, vehicle_entity(TRUCK, FULL_TRUCK_READING)]
    for entity in entities:
        assert nulls(entity) == []
        assert json.loads(json.dumps(entity, allow_nan=False)) == entity


@pytest.mark.parametrize(("waste_kind", "expected"), [
    ("paper", "paper"), ("Glass", "glass"), (" organic ", "organic"), ("biowaste", "organic"),
    ("cardboard", "paper"), ("mixed", "other"), ("residual", "other"), (None, None), ("", None), (3, None),
])
def test_stored_waste_kind(waste_kind: object, expected: str | None) -> None:
    assert stored_waste_kind(waste_kind) == expected
    device = Device("C-4", "container", "container", None, 41.0, 2.0, MappingProxyType({"waste_kind": waste_kind}))
    entity = waste_container_entity(device, None)
    assert entity.get("storedWasteKind") == expected
    assert schema_errors(entity) == []


def test_observation_time_is_iso_8601_utc() -> None:
    local = datetime(2026, 11, 23, 10, 15, 2, 500000, tzinfo=timezone(timedelta(hours=1)))
    latest = Reading(device_id="C-0001", time=local, received_at=local, message_key=b"k", profile="test")
    stamp = waste_container_entity(CONTAINER, latest)["binLoggedTime"]
    assert stamp == "2026-11-23T09:15:02.500000Z"
    assert datetime.fromisoformat(stamp) == local
    naive = Reading(device_id="T1", time=datetime(2026, 11, 23, 8, 0), received_at=T0, message_key=b"k",
                    profile="test", lat=41.0, lon=2.0)
    assert vehicle_entity(TRUCK, naive)["observationDateTime"] == "2026-11-23T08:00:00Z"


# --- Vehicle ---------------------------------------------------------------------------------------------


def test_vehicle_exact_entity_for_a_full_reading() -> None:
    assert vehicle_entity(TRUCK, FULL_TRUCK_READING) == {
        "id": "urn:ngsi-ld:Vehicle:T1",
        "type": "Vehicle",
        "vehicleType": "lorry",
        "category": ["municipalServices"],
        "serviceProvided": ["garbageCollection"],
        "name": "Truck 1",
        "vehiclePlateIdentifier": "1234 KLM",
        "location": {"type": "Point", "coordinates": [2.17, 41.387]},
        "speed": 23.5,
        "bearing": 270.0,
        "cargoWeight": 3140.0,
        "battery": 0.81,
        "ignitionStatus": True,
        "observationDateTime": "2026-11-23T08:15:02Z",
        "@context": [TRANSPORTATION_CONTEXT],
    }


def test_vehicle_property_names_and_value_types_match_the_example() -> None:
    entity = vehicle_entity(TRUCK, FULL_TRUCK_READING)
    assert set(entity) - set(VEHICLE_EXAMPLE) == {"@context"}
    for name in set(entity) - {"@context"}:
        assert json_shape(entity[name]) == json_shape(VEHICLE_EXAMPLE[name]), name
    assert set(entity["serviceProvided"]) <= set(VEHICLE_EXAMPLE["serviceProvided"])
    assert entity["category"] == VEHICLE_EXAMPLE["category"]
    assert entity["vehicleType"] == VEHICLE_EXAMPLE["vehicleType"]


def test_vehicle_location_is_lon_lat_and_only_from_the_reading() -> None:
    parked_at_depot = Device("T3", "truck", "truck", None, 41.30, 2.10)
    entity = vehicle_entity(parked_at_depot, reading("T3", lat=41.387, lon=2.17))
    assert entity["location"] == {"type": "Point", "coordinates": [2.17, 41.387]}
    with pytest.raises(LocationUnknownError, match="T3"):
        vehicle_entity(parked_at_depot, reading("T3", speed_kmh=12.0))
    with pytest.raises(LocationUnknownError):
        vehicle_entity(parked_at_depot, None)


def test_vehicle_cargo_weight_is_not_a_bin_lift_weight() -> None:
    lift = reading("T1", lat=41.39, lon=2.16, speed_kmh=0.0, event="bin_lift", rfid="E2003412010B", weight_kg=11.2)
    assert "cargoWeight" not in vehicle_entity(TRUCK, lift)
    load = reading("T1", lat=41.39, lon=2.16, weight_kg=5120.5)
    assert vehicle_entity(TRUCK, load)["cargoWeight"] == 5120.5
    assert "cargoWeight" not in vehicle_entity(TRUCK, reading("T1", lat=41.39, lon=2.16, weight_kg=0.0))


@pytest.mark.parametrize(("heading", "bearing"), [(0.0, 0.0), (43.0, 43.0), (359.5, 359.5), (360.0, 0.0)])
def test_vehicle_bearing(heading: float, bearing: float) -> None:
    assert vehicle_entity(TRUCK, reading("T1", lat=41.0, lon=2.0, heading_deg=heading))["bearing"] == bearing


@pytest.mark.parametrize(("plate", "expected"), [("3456ABC", "3456ABC"), (" 3456 ABC ", "3456 ABC"),
                                                 (123456, "123456"), (True, None), ("", None), (None, None)])
def test_vehicle_plate(plate: object, expected: str | None) -> None:
    device = Device("T4", "truck", "truck", attributes=MappingProxyType({"plate": plate}))
    assert vehicle_entity(device, reading("T4", lat=41.0, lon=2.0)).get("vehiclePlateIdentifier") == expected


# --- identifiers, dispatch, misuse -------------------------------------------------------------------------


def test_ids_are_ngsi_ld_urns_and_match_the_schema_pattern() -> None:
    assert entity_id("WasteContainer", "C-0042") == "urn:ngsi-ld:WasteContainer:C-0042"
    assert entity_id("Vehicle", "356307042441013") == "urn:ngsi-ld:Vehicle:356307042441013"
    assert entity_id("Vehicle", "fleet:T_1.a") == "urn:ngsi-ld:Vehicle:fleet:T_1.a"
    assert entity_id("WasteContainer", "Plaça%1?") == "urn:ngsi-ld:WasteContainer:Pla%C3%A7a%251%3F"
    entity = waste_container_entity(Device("Plaça 1", "container", "container", None, 41.0, 2.0), None)
    assert entity["id"] == "urn:ngsi-ld:WasteContainer:Pla%C3%A7a%201"
    assert schema_errors(entity) == []


def test_device_entity_picks_the_model_by_kind() -> None:
    assert device_entity(CONTAINER, FULL_CONTAINER_READING)["type"] == "WasteContainer"
    assert device_entity(CONTAINER, reading(temperature_c=50.0), fire_temperature_c=50.0)["status"] == "burning"
    assert device_entity(TRUCK, FULL_TRUCK_READING)["type"] == "Vehicle"
    with pytest.raises(ValueError, match="sweeper"):
        device_entity(Device("S1", "sweeper", "sweeper"), None)


def test_a_reading_of_another_device_is_refused() -> None:
    with pytest.raises(ValueError, match="T1"):
        waste_container_entity(CONTAINER, reading("T1", fill_pct=10.0))
    with pytest.raises(ValueError, match="C-0001"):
        vehicle_entity(TRUCK, reading("C-0001", lat=41.0, lon=2.0))


def test_contexts_are_the_smart_data_models_ones() -> None:
    assert waste_container_entity(CONTAINER, None)["@context"] == [WASTE_MANAGEMENT_CONTEXT]
    assert "smart-data-models/dataModel.WasteManagement/" in WASTE_MANAGEMENT_CONTEXT
    assert vehicle_entity(TRUCK, FULL_TRUCK_READING)["@context"] == [TRANSPORTATION_CONTEXT]
    assert "dataModel.Transportation/context.jsonld" in TRANSPORTATION_CONTEXT
