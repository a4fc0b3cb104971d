"""The benchmark's traffic, deterministic, written once to a file the publisher replays: a fleet of trucks
reporting at 1 Hz of their own clock (native JSON), each driving through a zone of the visit layer (so
its visits open and resolve incidents), with street containers (native JSON) and ChirpStack-wrapped
EM310-UDL uplinks mixed in.

At the default 100,000 messages: 1,000 trucks × 50 fixes (half the traffic), 2,000 containers and 500
LoRaWAN sensors. Fewer messages keep 50 fixes per truck and fewer trucks (a smoke run still has zone
visits); more give each truck more fixes.
"""

from __future__ import annotations

import base64
import json
import math
import random
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import MappingProxyType

from shapely import prepare
from shapely.geometry import Point

from bench.zones import REPO, VISIT_RADIUS_M, VISIT_ZONES, visit_zone_centres
from gateway.devices import Device
from gateway.rules.zones import load_zone_file

FLEET = 1000
FIXES = 50
TRUCK_SHARE = 0.5  # of the messages; the rest are containers and LoRaWAN uplinks, 5 : 3 as before
CONTAINERS = 2000
LORAWAN = 500
_METRES_PER_DEGREE = 111_320.0

Fix = tuple[float, float, float, int]  # lat, lon, speed km/h, heading


def fleet_size(count: int) -> tuple[int, int]:
    """(trucks, fixes per truck) for a traffic of `count` messages."""
    truck_messages = max(1, round(count * TRUCK_SHARE))
    trucks = min(FLEET, max(1, truck_messages // FIXES))
    return trucks, math.ceil(truck_messages / trucks)


def track(truck: int, fixes: int) -> list[Fix]:
    """A truck's fixes, one a second: a straight run through its zone of the visit layer (entering 2 to 30 s
    after the start, inside for 10 to 20 s), at 4 to 8 m/s, with a few metres of GPS noise."""
    rng = random.Random(f"bench-truck-{truck}")
    lon0, lat0 = visit_zone_centres()[truck % VISIT_ZONES]
    heading = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(4.0, 8.0)
    before = rng.uniform(VISIT_RADIUS_M + 10, VISIT_RADIUS_M + 160)  # metres to the zone's centre at the start
    metres_lon = _METRES_PER_DEGREE * math.cos(math.radians(lat0))
    out = []
    for k in range(fixes):
        along = -before + speed * k
        north = along * math.cos(heading) + rng.gauss(0, 3)
        east = along * math.sin(heading) + rng.gauss(0, 3)
        out.append((round(lat0 + north / _METRES_PER_DEGREE, 6), round(lon0 + east / metres_lon, 6),
                    round(speed * 3.6 + rng.uniform(-2, 2), 1), round(math.degrees(heading)) % 360))
    return out


@cache
def _service_areas() -> tuple[str | None, ...]:
    """Each truck's district (the `service_area` of the shipped rule), where its run starts."""
    districts = load_zone_file(REPO / "rules" / "zones" / "districtes.geojson")
    for district in districts:
        prepare(district.geometry)
    areas = []
    for truck in range(FLEET):
        lat, lon, _, _ = track(truck, 1)[0]
        point = Point(lon, lat)
        areas.append(next((d.name for d in districts if d.geometry.contains(point)), None))
    return tuple(areas)


def devices() -> list[Device]:
    containers = [Device(f"BC-{i:05d}", "container", "container", f"Bench {i}", 41.39, 2.16,
                         MappingProxyType({"bin_depth_mm": 1200})) for i in range(CONTAINERS)]
    lorawan = [Device(f"b0b0{i:012x}", "em310-udl-chirpstack", "container", f"Bench LoRa {i}", 41.39, 2.16,
                      MappingProxyType({"bin_depth_mm": 1500})) for i in range(LORAWAN)]
    trucks = [Device(f"BT{i:03d}", "truck", "truck", f"Truck {i:03d}",
                     attributes=MappingProxyType({"service_area": area} if area else {}))
              for i, area in enumerate(_service_areas())]
    return containers + lorawan + trucks


def messages(count: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """`count` messages: the fleet's fixes round by round (every truck's first fix, then every truck's
    second…), with container readings and ChirpStack uplinks spread among them at random."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    trucks, fixes = fleet_size(count)
    tracks = [track(truck, fixes) for truck in range(trucks)]
    truck_count = min(count, trucks * fixes)
    span_s = float(fixes)  # the traffic's device time: the fleet's fifty seconds
    frame_counters: dict[str, int] = {}
    out = []
    emitted = 0  # truck fixes so far
    for n in range(count):
        if rng.random() * (count - n) < truck_count - emitted:  # a random merge of the two streams
            k, truck = divmod(emitted, trucks)
            emitted += 1
            lat, lon, speed, heading = tracks[truck][k]
            at = (start + timedelta(seconds=k + truck / FLEET)).isoformat()
            payload = {"ts": at, "lat": lat, "lon": lon, "speed_kmh": speed, "heading_deg": heading,
                       "ignition": True}
            out.append((f"trucks/BT{truck:03d}/telemetry", json.dumps(payload).encode()))
            continue
        at = (start + timedelta(seconds=span_s * n / count)).isoformat()
        if rng.random() < 5 / 8:
            payload = {"ts": at, "distance_mm": rng.randrange(300, 1100),
                       "temperature_c": round(rng.uniform(10, 25), 1), "battery_pct": rng.randrange(40, 100),
                       "tilted": False}
            out.append((f"containers/BC-{rng.randrange(CONTAINERS):05d}/telemetry", json.dumps(payload).encode()))
        else:
            eui = f"b0b0{rng.randrange(LORAWAN):012x}"
            f_cnt = frame_counters[eui] = frame_counters.get(eui, rng.randrange(1, 5000)) + 1
            frame = bytes([0x01, 0x75, 90, 0x03, 0x82]) + rng.randrange(300, 1400).to_bytes(2, "little") + bytes(
                [0x04, 0x00, 0x00])
            envelope = {"time": at, "deviceInfo": {"devEui": eui}, "fCnt": f_cnt, "fPort": 85,
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
