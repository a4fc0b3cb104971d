"""The declarative JSON decoder: a YAML mapping from payload paths onto canonical fields.

A new JSON device needs a profile file, not code. Paths are dotted (`gps.lat`, `readings.0.value`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.events import CANONICAL_FIELDS
from gateway.profiles.decoded import Decoded, DecodeError
from gateway.profiles.decoders.timestamps import TimeFormat, TimestampError, parse_timestamp
from gateway.profiles.decoders.units import UNITS

_BOOL_FIELDS = {"tilted"}
_TEXT_FIELDS = {"rfid", "event"}
_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    required: bool = False
    # Sentinels that mean "unknown" (OwnTracks sends vel: -1); they become an absent field.
    unknown_values: tuple[Any, ...] = ()


def _field_spec(value: object) -> object:
    return {"path": value} if isinstance(value, str) else value


class TimeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    format: TimeFormat = "auto"
    required: bool = True


class JsonMappingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["json_mapping"]
    time: TimeSpec | None = None
    device_id: str | None = Field(default=None, description="path of the device id inside the payload")
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    extra: dict[str, FieldSpec] = Field(default_factory=dict, description="non-canonical fields to keep")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("fields", "extra"):
                if isinstance(data.get(key), dict):
                    data[key] = {name: _field_spec(spec) for name, spec in data[key].items()}
            if isinstance(data.get("time"), str):
                data["time"] = {"path": data["time"]}
        return data

    @model_validator(mode="after")
    def _known_fields_and_units(self) -> JsonMappingConfig:
        for name, spec in self.fields.items():
            if name not in CANONICAL_FIELDS:
                raise ValueError(f"unknown canonical field {name!r}; put vendor fields under 'extra'")
            if spec.unit is not None and spec.unit not in UNITS.get(name, {}):
                known = ", ".join(UNITS.get(name, {})) or "none"
                raise ValueError(f"field {name!r}: unknown unit {spec.unit!r} (known: {known})")
        return self

    def build(self) -> JsonMappingDecoder:
        return JsonMappingDecoder(self)


class _CompiledField:
    __slots__ = ("dotted", "key", "kind", "name", "number", "offset", "path", "required", "scale", "unknown")

    def __init__(self, name: str, spec: FieldSpec, kind: str) -> None:
        self.name = name
        self.dotted = spec.path
        self.path = tuple(spec.path.split("."))
        self.key = self.path[0] if len(self.path) == 1 else None  # a top-level key: looked up directly
        self.kind = kind
        self.number = kind == "number"
        # canonical = unit(raw * scale + offset): the profile's scale/offset act on the raw value first.
        unit_scale, unit_offset = UNITS.get(name, {}).get(spec.unit or "", (1.0, 0.0))
        self.scale = spec.scale * unit_scale
        self.offset = spec.offset * unit_scale + unit_offset
        self.required = spec.required
        self.unknown = spec.unknown_values


class JsonMappingDecoder:
    def __init__(self, config: JsonMappingConfig) -> None:
        self.config = config
        self._time = config.time
        self._time_path = tuple(config.time.path.split(".")) if config.time else ()
        self._device_path = tuple(config.device_id.split(".")) if config.device_id else ()
        self._fields = [_CompiledField(n, s, _kind(n)) for n, s in config.fields.items()]
        self._extra = [_CompiledField(n, s, "raw") for n, s in config.extra.items()]

    def decode(self, payload: bytes, topic_values: Mapping[str, str]) -> list[Decoded]:
        return [self.map_document(parse_json_object(payload))]

    def map_document(self, document: Mapping[str, Any]) -> Decoded:
        """Maps an already parsed JSON object (also used for network servers' decoded objects)."""
        values: dict[str, Any] = {}
        for compiled in self._fields:
            key = compiled.key
            value = document.get(key) if key is not None else _lookup(document, compiled.path)
            if value is None or (compiled.unknown and value in compiled.unknown):
                if compiled.required:
                    raise DecodeError("payload_mismatch", f"missing required field '{compiled.dotted}'")
                continue
            if compiled.number and (type(value) is int or (type(value) is float and math.isfinite(value))):
                values[compiled.name] = value * compiled.scale + compiled.offset  # the common case, inline
            else:
                values[compiled.name] = _convert(compiled, value)
        extra = {}
        for compiled in self._extra:
            key = compiled.key
            value = document.get(key) if key is not None else _lookup(document, compiled.path)
            if value is not None and value not in compiled.unknown:
                extra[compiled.name] = value
        return Decoded(values=values, time=self._read_time(document), device_id=self._read_device(document),
                       extra=extra)

    def _read_time(self, document: Mapping[str, Any]) -> Any:
        if self._time is None:
            return None
        raw = _lookup(document, self._time_path)
        if raw is None:
            if self._time.required:
                raise DecodeError("payload_mismatch", f"missing timestamp '{self._time.path}'")
            return None
        try:
            return parse_timestamp(raw, self._time.format)
        except TimestampError as exc:
            raise DecodeError("bad_timestamp", str(exc)) from exc

    def _read_device(self, document: Mapping[str, Any]) -> str | None:
        if not self._device_path:
            return None
        raw = _lookup(document, self._device_path)
        return None if raw is None else str(raw)


# 19 digits in a row may be an integer outside orjson's 64-bit range. Every digit becomes "0" and
# everything else "x", then a plain substring search: five times cheaper than the regex \d{19}.
_DIGITS_AS_ZERO = bytes(ord("0") if chr(i).isdigit() and i < 128 else ord("x") for i in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def parse_json_object(payload: bytes) -> dict[str, Any]:
    if _LONG_DIGIT_RUN in payload.translate(_DIGITS_AS_ZERO):
        # orjson turns an integer beyond 64 bits into a float; the standard library keeps it exact.
        document = _parse_with_stdlib(payload)
    else:
        try:
            # orjson is about five times faster than the standard library on these small documents.
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            # The standard library says what is wrong more precisely (and takes NaN, as before): the
            # rare bad payload pays for a second parse.
            document = _parse_with_stdlib(payload)
    if not isinstance(document, dict):
        raise DecodeError("payload_mismatch", f"expected a JSON object, got {type(document).__name__}")
    return document


def _parse_with_stdlib(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_encoding", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError("invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def _kind(name: str) -> str:
    if name in _BOOL_FIELDS:
        return "bool"
    if name in _TEXT_FIELDS:
        return "text"
    return "number"


def _lookup(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = document
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
        if node is None:
            return None
    return node


def _convert(compiled: _CompiledField, value: Any) -> Any:
    """Any value but a finite int or float for a number field, which `map_document` converts inline."""
    if compiled.kind == "number":
        name = compiled.dotted
        if isinstance(value, bool):
            raise DecodeError("payload_mismatch", f"field '{name}' must be a number, got a boolean")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise DecodeError("payload_mismatch", f"field '{name}' must be a number, got {value!r}") from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise DecodeError("payload_mismatch", f"field '{name}' must be a finite number, got {value!r}")
        return value * compiled.scale + compiled.offset
    name = compiled.dotted
    if compiled.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.lower() in _TRUE_WORDS
        raise DecodeError("payload_mismatch", f"field '{name}' must be a boolean, got {value!r}")
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise DecodeError("payload_mismatch", f"field '{name}' must be text, got {value!r}")
