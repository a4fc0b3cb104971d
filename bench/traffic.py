"""The benchmark's mixed traffic: trucks at 1 Hz (native JSON), street containers (native JSON) and
ChirpStack-wrapped EM310-UDL uplinks, deterministic, written once to a file the publisher replays."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from gateway.devices import Device

TRUCKS = 100
CONTAINERS = 2000
LORAWAN = 500


def devices() -> list[Device]:
    containers = [Device(f"BC-{i:05d}", "container", "container", f"Bench {i}", 41.39, 2.16,
                         MappingProxyType({"bin_depth_mm": 1200})) for i in range(CONTAINERS)]
    lorawan = [Device(f"b0b0{i:012x}", "em310-udl-chirpstack", "container", f"Bench LoRa {i}", 41.39, 2.16,
                      MappingProxyType({"bin_depth_mm": 1500})) for i in range(LORAWAN)]
    return containers + lorawan


def messages(count: int, seed: int = 1, sent_field: bool = False) -> list[tuple[str, bytes]]:
    """`count` messages: 60% truck fixes, 25% container readings, 15% ChirpStack uplinks."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    out = []
    for n in range(count):
        at = (start + timedelta(milliseconds=n)).isoformat()
        kind = rng.random()
        if kind < 0.60:
            truck = n % TRUCKS
            payload = {"ts": at, "lat": round(41.38 + rng.random() * 0.03, 6),
                       "lon": round(2.14 + rng.random() * 0.05, 6), "speed_kmh": round(rng.random() * 18, 1),
                       "heading_deg": rng.randrange(360), "ignition": True}
            out.append((f"trucks/BT{truck:03d}/telemetry", json.dumps(payload).encode()))
        elif kind < 0.85:
            payload = {"ts": at, "distance_mm": rng.randrange(300, 1100),
                       "temperature_c": round(rng.uniform(10, 25), 1), "battery_pct": rng.randrange(40, 100),
                       "tilted": False}
            out.append((f"containers/BC-{rng.randrange(CONTAINERS):05d}/telemetry", json.dumps(payload).encode()))
        else:
            eui = f"b0b0{rng.randrange(LORAWAN):012x}"
            frame = bytes([0x01, 0x75, 90, 0x03, 0x82]) + rng.randrange(300, 1400).to_bytes(2, "little") + bytes(
                [0x04, 0x00, 0x00])
            envelope = {"time": at, "deviceInfo": {"devEui": eui}, "fCnt": n, "fPort": 85,
                        "data": base64.b64encode(frame).decode()}
            out.append((f"application/bench/device/{eui}/event/up", json.dumps(envelope).encode()))
    return out


def write(path: Path, items: list[tuple[str, bytes]]) -> None:
    with path.open("w") as file:
        for topic, payload in items:
            file.write(json.dumps([topic, base64.b64encode(payload).decode()]) + "\n")


def read(path: Path) -> list[tuple[str, bytes]]:
    items = []
    for line in path.read_text().splitlines():
        topic, payload = json.loads(line)
        items.append((topic, base64.b64decode(payload)))
    return items
