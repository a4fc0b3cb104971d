"""The gateway's in-memory view of the device registry, refreshed from the `devices` table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    profile: str
    kind: str
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    last_f_cnt: int | None = None  # LoRaWAN frame counter last stored
    last_seen: datetime | None = None
    # The municipality it serves ('' on a single-city install): only that jurisdiction's rules apply to it.
    jurisdiction: str = ""


class DeviceDirectory:
    """Lookups on the hot path are one dict access; the whole map is swapped on refresh."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._devices: dict[str, Device] = {d.device_id: d for d in devices}
        self.version = 0  # bumped on every change, for caches derived from the registry

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def replace_all(self, devices: Iterable[Device]) -> None:
        self._devices = {d.device_id: d for d in devices}
        self.version += 1

    def add(self, device: Device) -> None:
        self._devices[device.device_id] = device
        self.version += 1

    def __iter__(self) -> Iterator[Device]:
        return iter(list(self._devices.values()))

    def __len__(self) -> int:
        return len(self._devices)


# A device is silent once it has missed this many expected reports (as the shipped sensor-silent rule).
SILENT_AFTER_REPORTS = 3


def reporting_status(latest_reading: datetime | None, expected_interval_s: float | None, now: datetime) -> str:
    """`never_seen`, `silent` or `reporting`, judged on the device's clock: the time of its newest reading
    against `now` (the gateway's clock, on which device times are checked)."""
    if latest_reading is None:
        return "never_seen"
    if expected_interval_s and now - latest_reading > timedelta(seconds=expected_interval_s * SILENT_AFTER_REPORTS):
        return "silent"
    return "reporting"
