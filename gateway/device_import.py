"""Reads a device list (CSV or YAML) for `wastegate devices import`, reporting bad rows by line number.

CSV: a header row with `device_id, profile` and optionally `kind, name, lat, lon`; every other column is
an attribute (`bin_depth_mm`, `capacity_l`, `waste_kind`, …), numbers read as numbers.
YAML: a list of mappings (or `devices:` holding one) with the same keys and an `attributes` mapping.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.devices import Device

_COLUMNS = {"device_id", "profile", "kind", "name", "lat", "lon"}


class DeviceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=200, pattern=r"^[^/+#\s]+$")
    profile: str = Field(min_length=1)
    kind: str | None = None
    name: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    attributes: dict[str, Any] = Field(default_factory=dict)


class DeviceFileError(ValueError):
    """All the problems of a file; nothing of it was applied."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s), nothing imported\n" + "\n".join(problems))
        self.problems = problems


def read_devices(path: Path, profile_kinds: Mapping[str, str]) -> list[Device]:
    """Parses and validates every row; raises DeviceFileError listing each bad row with its line."""
    text = path.read_text(encoding="utf-8")
    rows = _yaml_rows(text, path) if path.suffix.lower() in (".yaml", ".yml") else _csv_rows(text)
    devices: list[Device] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            record = DeviceRecord.model_validate(row)
        except ValidationError as exc:
            problems.extend(
                f"{path}:{line}: {'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()
            )
            continue
        if record.profile not in profile_kinds:
            problems.append(f"{path}:{line}: profile {record.profile!r} is not one of {sorted(profile_kinds)}")
            continue
        if record.device_id in seen:
            problems.append(f"{path}:{line}: device {record.device_id!r} already on line {seen[record.device_id]}")
            continue
        seen[record.device_id] = line
        devices.append(Device(
            record.device_id, record.profile, record.kind or profile_kinds[record.profile], record.name,
            record.lat, record.lon, MappingProxyType(record.attributes),
        ))
    if problems:
        raise DeviceFileError(path, problems)
    return devices


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for row in reader:
        record: dict[str, Any] = {"attributes": {}}
        for key, value in row.items():
            if key is None:
                record["__extra_cells__"] = value  # more cells than the header has: refused by the model
                continue
            key = key.strip()
            value = (value or "").strip()
            if value == "":
                continue
            if key in _COLUMNS:
                record[key] = value
            else:
                record["attributes"][key] = _number_or_text(value)
        rows.append((reader.line_num, record))
    return rows


def _number_or_text(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _yaml_rows(text: str, path: Path) -> list[tuple[int, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise DeviceFileError(path, [f"{path}: {exc}"]) from exc
    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        devices = [value for key, value in root.value if key.value == "devices"]
        if not devices:
            raise DeviceFileError(path, [f"{path}:{root.start_mark.line + 1}: expected a list or a 'devices:' key"])
        root = devices[0]
    if not isinstance(root, yaml.SequenceNode):
        raise DeviceFileError(path, [f"{path}:{root.start_mark.line + 1}: expected a list of devices"])
    loader_rows = []
    for node in root.value:
        value = yaml.SafeLoader(io.StringIO()).construct_document(node)
        loader_rows.append((node.start_mark.line + 1, value))
    return loader_rows
