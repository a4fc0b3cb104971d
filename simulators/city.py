"""A deterministic city for the demo, the acceptance test and the benchmark's mixed traffic.

Around l'Eixample, Barcelona: collection trucks on door-to-door rounds lifting households' bins (RFID tags
and weights, GPS jitter, occasional dropouts), street containers filling at the pace of their waste kind,
emptied when a truck passes, their batteries draining; and on purpose one of each thing the shipped rules
must catch, listed as the ground truth (`expected`): a full container, a fire, a knocked-over container, a
low battery, a silent sensor, a truck speeding through a school zone, one wandering out of its district,
one idling away from the depots, a lift of an unregistered tag and a household missed. Native JSON and
ChirpStack-wrapped EM310-UDL and EM400-UDL payloads, and malformed messages for the dead letter. Everything
is a function of the seed and of simulated time.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from gateway.devices import Device

MADRID = ZoneInfo("Europe/Madrid")
SCHOOL = (2.1601, 41.3921)  # rules/zones/school-zones.geojson: escola-diagonal, 20 km/h
EIXAMPLE_STREET = ((2.1560, 41.3880), (2.1700, 41.3985))  # along Carrer d'Aragó / Provença, inside Eixample
GRACIA = (2.1570, 41.4035)
UNKNOWN_TAG = "E200DEADBEEF0000"
CONTAINER_REPORT = timedelta(minutes=10)
TRUCK_REPORT = timedelta(seconds=10)


@dataclass(frozen=True)
class Expected:
    service_code: str
    subject: str
    what: str


@dataclass
class _Truck:
    device: Device
    next_at: datetime
    lifts: list[tuple[timedelta, str]] = field(default_factory=list)  # (when, tag)


def demo_start(day: datetime) -> datetime:
    """08:00 in Barcelona on the given day: inside the households' collection window."""
    local = day.astimezone(MADRID).replace(hour=8, minute=0, second=0, microsecond=0)
    return local.astimezone(MADRID).astimezone(ZoneInfo("UTC"))


class City:
    def __init__(self, start: datetime, containers: int = 12, trucks: int = 3, seed: int = 7) -> None:
        self.start = start
        self.random = random.Random(seed)
        self.containers = [self._container(i) for i in range(1, containers + 1)]
        self.households = [self._household(i) for i in range(1, 7)]
        self.trucks = [_Truck(Device(f"T{i}", "truck", "truck", f"{1000 + 37 * i} KWG"), start)
                       for i in range(1, trucks + 1)]
        self.speeder = _Truck(Device("T-SPEED", "truck", "truck", "4711 LMB"), start)
        self.wanderer = _Truck(Device("T-WANDER", "truck", "truck", "2290 HJX",
                                      attributes=MappingProxyType({"service_area": "Eixample"})), start)
        self.idler = _Truck(Device("T-IDLE", "truck", "truck", "8023 GRS"), start)
        self.lorawan = Device("a84041000181c6e1", "em310-udl-chirpstack", "container", "LoRaWAN bin, Girona 50",
                              41.3945, 2.1680, MappingProxyType({"bin_depth_mm": 1500, "sensor_offset_mm": 50}))
        self.lorawan_thermal = Device("a84041000181c6e2", "em400-udl-chirpstack", "container", "LoRaWAN bin, Bruc 80",
                                      41.3935, 2.1700, MappingProxyType({"bin_depth_mm": 1500}))
        self._lorawan = [self.lorawan, self.lorawan_thermal]
        self._container_next = {c.device_id: start for c in [*self.containers, *self._lorawan]}
        self._fill = {c.device_id: self.random.uniform(10, 45) for c in self.containers}
        self._battery = {c.device_id: self.random.uniform(60, 100) for c in self.containers}
        # Street containers on the first truck's round are emptied as it passes, half an hour in.
        self._emptied_at = {c.device_id: timedelta(minutes=30) for c in self.containers[6:]}
        # Households on the first normal truck's round; all lifted between 08:02 and 08:25 but H-D003.
        for index, household in enumerate(self.households):
            if household["id"] != "H-D003":
                self.trucks[index % len(self.trucks)].lifts.append((timedelta(minutes=2 + 4 * index), household["tag"]))
        self.trucks[0].lifts.append((timedelta(minutes=8), UNKNOWN_TAG))
        for truck in self.trucks:
            truck.lifts.sort()
        self.malformed_every = 97

    # -- what the gateway is told before the traffic starts -------------------------------------------

    def registered_devices(self) -> list[Device]:
        trucks = [t.device for t in (*self.trucks, self.speeder, self.wanderer, self.idler)]
        return [*self.containers, *self._lorawan, *trucks]

    def households_yaml(self) -> str:
        return json.dumps({"households": self.households}, indent=1)

    @property
    def expected(self) -> list[Expected]:
        return [
            Expected("container_full", "C-0002", "a container full for 20 minutes"),
            Expected("container_fire", "C-0003", "a fire (78 °C)"),
            Expected("container_damaged", "C-0004", "a container knocked over"),
            Expected("sensor_fault", "C-0005", "a battery at 11%"),
            Expected("sensor_fault", "C-0006", "a sensor silent after its first report"),
            Expected("vehicle_conduct", "T-SPEED:school-zones/escola-diagonal", "40 km/h in a 20 km/h school zone"),
            Expected("vehicle_conduct", "T-WANDER", "a truck out of its district"),
            Expected("vehicle_conduct", "T-IDLE", "a truck idling away from the depot"),
            Expected("unknown_tag", f"tag:{UNKNOWN_TAG}", "a lift of an unregistered tag"),
            Expected("missed_collection", "household:H-D003", "a household not collected"),
        ]

    # -- traffic -----------------------------------------------------------------------------------------

    def messages_until(self, now: datetime) -> Iterator[tuple[str, bytes]]:
        """Every message due between the last call and `now` (simulated time)."""
        for container in [*self.containers, *self._lorawan]:
            while self._container_next[container.device_id] <= now:
                at = self._container_next[container.device_id]
                self._container_next[container.device_id] = at + CONTAINER_REPORT
                message = self._container_message(container, at)
                if message is not None:
                    yield message
        for truck in (*self.trucks, self.speeder, self.wanderer, self.idler):
            while truck.next_at <= now:
                at = truck.next_at
                truck.next_at = at + TRUCK_REPORT
                if self.random.random() < 0.01 and truck in self.trucks:
                    continue  # a GPS or network dropout: this fix never arrives
                yield self._truck_message(truck, at)
                if self.random.randrange(self.malformed_every) == 0:
                    truncated = b'{"ts": "' + at.isoformat().encode() + b'", "lat":'
                    yield f"trucks/{truck.device.device_id}/telemetry", truncated

    def _container(self, index: int) -> Device:
        angle = index * 2.399963
        lat = 41.3930 + 0.006 * math.sin(angle) * (index % 5 + 1) / 5
        lon = 2.1640 + 0.008 * math.cos(angle) * (index % 5 + 1) / 5
        streets = ("Aragó", "Consell de Cent", "Provença", "Rosselló", "València", "Mallorca")
        name = f"{streets[index % len(streets)]} {10 + 14 * index}"
        return Device(f"C-{index:04d}", "container", "container", name, round(lat, 6), round(lon, 6),
                      MappingProxyType({"bin_depth_mm": 1200, "sensor_offset_mm": 50, "capacity_l": 3200,
                                        "waste_kind": ("mixed", "paper", "glass", "organic")[index % 4],
                                        "expected_interval_s": int(CONTAINER_REPORT.total_seconds())}))

    def _household(self, index: int) -> dict[str, Any]:
        (lon0, lat0), (lon1, lat1) = EIXAMPLE_STREET
        share = index / 7
        return {"id": f"H-D{index:03d}", "tag": f"E2003412D{index:07d}",
                "address": f"Carrer d'Aragó {100 + 12 * index}",
                "lat": round(lat0 + (lat1 - lat0) * share, 6), "lon": round(lon0 + (lon1 - lon0) * share, 6),
                "service_area": "Eixample", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "window": "07:50-08:30"}

    def _container_message(self, container: Device, at: datetime) -> tuple[str, bytes] | None:
        minutes = (at - self.start).total_seconds() / 60
        device_id = container.device_id
        if container in self._lorawan:
            return self._chirpstack_uplink(container, at, minutes)
        if device_id == "C-0006" and minutes > 0:
            return None  # silent after its first report
        # Organic waste fills fastest, glass slowest; a lift by a passing truck empties the container.
        rate = {"organic": 1.6, "mixed": 1.2, "paper": 0.8, "glass": 0.4}[container.attributes["waste_kind"]]
        fill = self._fill[device_id] = min(60.0, self._fill[device_id] + self.random.uniform(0, rate))
        emptied = self._emptied_at.get(device_id)
        if emptied is not None and at - self.start >= emptied:
            fill = self._fill[device_id] = 3.0
            del self._emptied_at[device_id]
        battery = self._battery[device_id] = max(20.0, self._battery[device_id] - 0.05)
        payload: dict[str, Any] = {"ts": at.isoformat(), "temperature_c": round(self.random.uniform(14, 22), 1),
                                   "battery_pct": round(battery), "tilted": False}
        depth, offset = 1200, 50
        if device_id == "C-0002":
            fill = 85 + minutes / 10
        payload["distance_mm"] = round(depth - fill / 100 * depth + offset)
        if device_id == "C-0003" and minutes >= 10:
            payload["temperature_c"] = 78.0
        if device_id == "C-0004" and minutes >= 10:
            payload["tilted"] = True
        if device_id == "C-0005":
            payload["battery_pct"] = 11
        return f"containers/{device_id}/telemetry", json.dumps(payload).encode()

    def _chirpstack_uplink(self, device: Device, at: datetime, minutes: float) -> tuple[str, bytes]:
        # A slowly filling bin that stays well below the full level (however long the simulation runs).
        distance = max(400, 900 - int(minutes * 2))
        if device is self.lorawan:  # EM310-UDL: battery, distance, position
            frame = bytes([0x01, 0x75, 88, 0x03, 0x82]) + distance.to_bytes(2, "little") + bytes([0x04, 0x00, 0x00])
        else:  # EM400-UDL: battery, temperature (0.1 °C), distance, position
            frame = (bytes([0x01, 0x75, 93, 0x03, 0x67]) + (195).to_bytes(2, "little", signed=True)
                     + bytes([0x04, 0x82]) + distance.to_bytes(2, "little") + bytes([0x05, 0x00, 0x00]))
        envelope = {"time": at.isoformat(), "deviceInfo": {"devEui": device.device_id, "deviceName": "bin"},
                    "fCnt": int(minutes // 10) + 1, "fPort": 85, "data": base64.b64encode(frame).decode()}
        topic = f"application/demo/device/{device.device_id}/event/up"
        return topic, json.dumps(envelope).encode()

    def _truck_message(self, truck: _Truck, at: datetime) -> tuple[str, bytes]:
        elapsed = at - self.start
        minutes = elapsed.total_seconds() / 60
        payload: dict[str, Any] = {"ts": at.isoformat(), "ignition": True}
        if truck is self.speeder:
            lon, lat, speed = self._speeder(minutes)
        elif truck is self.wanderer:
            lon, lat, speed = (GRACIA[0], GRACIA[1], 15.0) if 15 <= minutes < 25 else (*_along(0.3), 15.0)
        elif truck is self.idler:
            lon, lat, speed = (*_along(0.75), 0.0) if minutes >= 5 else (*_along(0.7 + minutes / 100), 12.0)
        else:
            index = self.trucks.index(truck)
            share = (minutes / 30 + index / len(self.trucks)) % 1.0
            lon, lat = _along(share)
            speed = 15.0
            while truck.lifts and truck.lifts[0][0] <= elapsed:
                _, tag = truck.lifts.pop(0)
                payload.update(event="bin_lift", rfid=tag, weight_kg=round(self.random.uniform(3, 18), 1))
                speed = 0.0
        payload.update(lat=round(lat + self.random.gauss(0, 0.00002), 6),
                       lon=round(lon + self.random.gauss(0, 0.00002), 6), speed_kmh=speed,
                       heading_deg=round(self.random.uniform(0, 359)))
        return f"trucks/{truck.device.device_id}/telemetry", json.dumps(payload).encode()

    def _speeder(self, minutes: float) -> tuple[float, float, float]:
        if 12 <= minutes < 14:
            return SCHOOL[0], SCHOOL[1], 40.0  # through the school zone at twice its limit
        return SCHOOL[0] - 0.004, SCHOOL[1], 15.0


def _along(share: float) -> tuple[float, float]:
    (lon0, lat0), (lon1, lat1) = EIXAMPLE_STREET
    return lon0 + (lon1 - lon0) * share, lat0 + (lat1 - lat0) * share
