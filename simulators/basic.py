"""A small, deterministic city: trucks driving around central Barcelona and container sensors filling up,
with a few malformed messages mixed in. The seed of the fuller simulators of issue #6."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from gateway.devices import Device

# Around l'Eixample, Barcelona.
CENTRE = (41.3926, 2.1640)


@dataclass
class _Truck:
    device_id: str
    lat: float
    lon: float
    heading: float


class BasicCity:
    def __init__(self, trucks: int = 5, containers: int = 20, seed: int = 1) -> None:
        self.random = random.Random(seed)
        self.trucks = [
            _Truck(f"T{i + 1}", CENTRE[0] + self.random.uniform(-0.01, 0.01),
                   CENTRE[1] + self.random.uniform(-0.015, 0.015), self.random.uniform(0, 360))
            for i in range(trucks)
        ]
        self.containers = [
            Device(f"C-{i + 1:04d}", "container", "container", f"Container {i + 1}",
                   round(CENTRE[0] + self.random.uniform(-0.012, 0.012), 6),
                   round(CENTRE[1] + self.random.uniform(-0.018, 0.018), 6),
                   MappingProxyType({"bin_depth_mm": 1200, "sensor_offset_mm": 50, "capacity_l": 3200,
                                     "waste_kind": self.random.choice(["mixed", "paper", "glass", "organic"])}))
            for i in range(containers)
        ]
        self.fill = {c.device_id: self.random.uniform(0, 60) for c in self.containers}
        self.tick = 0

    def registered_devices(self) -> list[Device]:
        return list(self.containers)

    def step(self, now: datetime) -> Iterator[tuple[str, bytes]]:
        """One second of traffic: every truck reports; a few containers report; now and then garbage."""
        self.tick += 1
        ts = now.isoformat()
        for truck in self.trucks:
            truck.heading = (truck.heading + self.random.uniform(-20, 20)) % 360
            speed = self.random.uniform(0, 35)
            step_deg = speed / 3.6 / 111_000
            truck.lat += step_deg * math.cos(math.radians(truck.heading))
            truck.lon += step_deg * math.sin(math.radians(truck.heading)) / math.cos(math.radians(truck.lat))
            message: dict[str, object] = {"ts": ts, "lat": round(truck.lat, 6), "lon": round(truck.lon, 6),
                                          "speed_kmh": round(speed, 1), "heading_deg": round(truck.heading),
                                          "ignition": True}
            if self.random.random() < 0.1:
                message.update(event="bin_lift", rfid=f"E200{self.random.randrange(16**8):08X}",
                               weight_kg=round(self.random.uniform(2, 25), 1))
            yield f"trucks/{truck.device_id}/telemetry", json.dumps(message).encode()
        for container in self.random.sample(self.containers, k=max(1, len(self.containers) // 10)):
            self.fill[container.device_id] = min(100.0, self.fill[container.device_id] + self.random.uniform(0, 8))
            depth = 1200
            distance = depth - self.fill[container.device_id] / 100 * depth + 50
            yield f"containers/{container.device_id}/telemetry", json.dumps({
                "ts": ts, "distance_mm": round(distance), "temperature_c": round(self.random.uniform(12, 24), 1),
                "battery_pct": 80, "tilted": False}).encode()
        if self.tick % 7 == 0:
            yield "trucks/T1/telemetry", b'{"ts": "' + ts.encode() + b'", "lat": 41.39, "lon": '
        if self.tick % 11 == 0:
            yield "containers/C-9999/telemetry", json.dumps({"ts": ts, "fill_pct": 50}).encode()
