"""A month of the city with its ground truth, for the rule lab's signal-quality benchmark.

Street containers (native JSON, every 10 minutes) fill at their own pace, faster at weekends, and are
emptied every two or three days; now and then one catches fire, is knocked over, goes silent for hours
or drains its battery. Collection trucks (a fix every 5 s, 06:00–13:00 Barcelona time) drive door-to-door
rounds in l'Eixample lifting the households' bins (RFID tags, weights), stop at containers, idle with the
engine on, cross the school zone (a few at twice its limit), wander out of their district. And the noise
the rules are built against: sensor noise, GPS jitter and multipath jumps, short stops, tilt glitches,
dropped messages, duplicated lift reads, fixes buffered in a dead zone and uploaded late.

`truth` lists every event a shipped rule should catch (rule id, subject, when it began and ended);
`ambiguous` ones (a fill crossing the full level minutes before the truck empties it) count neither way.
Everything is a function of the seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from shapely import contains_xy, prepare, unary_union
from shapely.geometry import LineString, Polygon

from gateway.devices import Device
from gateway.events import EMPTY, Reading
from gateway.rules.zones import load_zone_file

REPO = Path(__file__).resolve().parents[1]
MADRID = ZoneInfo("Europe/Madrid")
_METRES_PER_DEGREE = 111_320.0
CONTAINER_EVERY_S = 600
FILL_NOISE = 1.5  # the level sensor's noise, % (one standard deviation)
TRUCK_EVERY_S = 5
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCHEDULES = (("mon", "thu"), ("tue", "fri"), ("wed", "sat"))
WEEKEND_FILL = 1.4  # containers fill faster at weekends


def hours_to_reach(month_start: datetime, at_s: float, fill: float, rate: float, level: float = 80.0) -> float:
    """The fill model's own answer: hours from `at_s` until a container at `fill` reaches `level` if nobody
    empties it."""
    t, hours = at_s, 0.0
    step = 600.0
    while fill < level:
        weekend = (month_start + timedelta(seconds=t)).astimezone(MADRID).weekday() >= 5
        gain = rate * step / 3600 * (WEEKEND_FILL if weekend else 1.0)
        if fill + gain >= level:
            return hours + (level - fill) / gain * step / 3600
        fill += gain
        t += step
        hours += step / 3600
    return hours


@dataclass(frozen=True)
class TruthEvent:
    rule_id: str
    subject: str
    start: datetime
    end: datetime
    ambiguous: bool = False


@dataclass
class _Arrival:
    arrival: datetime
    reading: Reading


def _key(*parts: object) -> bytes:
    return hashlib.blake2b("|".join(str(p) for p in parts).encode(), digest_size=16).digest()


class Month:
    def __init__(self, start: datetime, days: int = 30, containers: int = 150, trucks: int = 8,
                 households: int = 300, seed: int = 11) -> None:
        self.start = start
        self.end = start + timedelta(days=days)
        self.days = days
        self.seed = seed
        zones = {z.name: z.geometry for z in load_zone_file(REPO / "rules" / "zones" / "districtes.geojson")}
        self.eixample: Polygon = zones["Eixample"]
        self.inner = self.eixample.buffer(-30 / _METRES_PER_DEGREE)
        prepare(self.eixample)
        prepare(self.inner)
        schools = load_zone_file(REPO / "rules" / "zones" / "school-zones.geojson")
        self.school = next(z.geometry for z in schools if z.id.endswith("escola-diagonal"))  # the speeders' one
        # where drivers keep to the school zones' limit (20 km/h): every zone, and the 60 m before it
        self.school_slow = unary_union([z.geometry for z in schools]).buffer(60 / _METRES_PER_DEGREE)
        prepare(self.school)
        prepare(self.school_slow)
        self.truth: list[TruthEvent] = []
        # The fill model itself, per container: its rate (% an hour on weekdays, WEEKEND_FILL times that at
        # weekends) and its true (noiseless) fill at each report, as seconds from the start.
        self.fill_rates: dict[str, float] = {}
        self.true_fills: dict[str, list[tuple[float, float]]] = {}
        rng = random.Random(seed)
        self._containers = [self._container_device(i, rng) for i in range(containers)]
        self._households = [self._household(i, rng) for i in range(households)]
        self._trucks = [Device(f"MT{i:02d}", "truck", "truck", f"Truck {i:02d}",
                               attributes=MappingProxyType({"service_area": "Eixample"})) for i in range(trucks)]
        self._arrivals: list[_Arrival] = []
        for device in self._containers:
            self._container_month(device, random.Random(f"{seed}-{device.device_id}"))
        rounds = self._rounds(random.Random(f"{seed}-rounds"))
        for index, truck in enumerate(self._trucks):
            self._truck_month(truck, rounds[index], random.Random(f"{seed}-{truck.device_id}"))
        self._missed_collections(rounds)

    # -- what is registered ----------------------------------------------------------------------------

    def devices(self) -> list[Device]:
        return [*self._containers, *self._trucks]

    def households_yaml(self) -> str:
        return json.dumps({"households": self._households}, indent=1)

    # -- the traffic -----------------------------------------------------------------------------------

    def history(self) -> list[Reading]:
        """What a backtest reads: each message once (the store's key drops duplicates), in device-time
        order."""
        unique = {(a.reading.device_id, a.reading.time, a.reading.message_key): a.reading for a in self._arrivals}
        return sorted(unique.values(), key=lambda r: (r.time, r.device_id, r.message_key))

    def as_received(self) -> list[Reading]:
        """What the live gateway's rules saw: each message once, in the order it arrived (buffered fixes
        after the live ones that overtook them)."""
        seen: set[bytes] = set()
        out = []
        for arrival in sorted(self._arrivals, key=lambda a: (a.arrival, a.reading.device_id, a.reading.time)):
            if arrival.reading.message_key not in seen:
                seen.add(arrival.reading.message_key)
                out.append(arrival.reading)
        return out

    @property
    def sent(self) -> int:
        return len(self._arrivals)

    # -- containers ------------------------------------------------------------------------------------

    def _container_device(self, index: int, rng: random.Random) -> Device:
        minx, miny, maxx, maxy = self.inner.bounds
        while True:
            lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if contains_xy(self.inner, lon, lat):
                break
        return Device(f"MC-{index:04d}", "container", "container", f"Container {index}", round(lat, 6),
                      round(lon, 6), MappingProxyType({"bin_depth_mm": 1200, "expected_interval_s": CONTAINER_EVERY_S}))

    def _container_month(self, device: Device, rng: random.Random) -> None:
        device_id = device.device_id
        seconds = self.days * 86400
        fill = rng.uniform(0, 30)
        rate = self.fill_rates[device_id] = rng.uniform(0.4, 1.6)  # % an hour
        true_fills = self.true_fills[device_id] = []
        empties = []
        at = rng.uniform(1, 2.5) * 86400
        while at < seconds:
            local = (self.start + timedelta(seconds=at)).astimezone(MADRID)
            hour = rng.uniform(7, 11)
            emptied = datetime.combine(local.date(), time(int(hour), int(hour % 1 * 60)), MADRID)
            empties.append((emptied - self.start).total_seconds())
            at += rng.uniform(2, 3) * 86400
        battery = rng.uniform(16, 22) if rng.random() < 0.3 else rng.uniform(45, 100)
        drain = rng.uniform(0.35, 0.7) / 86400  # % a second
        replaced_after = rng.uniform(2, 6) * 86400
        fire = self._span(rng, 0.15, 40 * 60, 90 * 60)
        tilt = self._span(rng, 0.2, 3600, 8 * 3600)
        silent = self._span(rng, 0.2, 2 * 3600, 30 * 3600)
        full_since: float | None = None
        full_peak = 0.0
        battery_low_since: float | None = None
        battery_near_since: float | None = None
        fire_reported = False
        silent_reported = False
        last_report: float | None = None
        lost_in_a_row = 0
        glitched = False
        t = rng.uniform(0, CONTAINER_EVERY_S)
        prev_t = 0.0
        while t < seconds:
            step_h = (t - prev_t) / 3600
            weekend = (self.start + timedelta(seconds=t)).astimezone(MADRID).weekday() >= 5
            fill = min(100.0, fill + rate * step_h * (WEEKEND_FILL if weekend else 1.0))
            while empties and empties[0] <= t:
                emptied_at = empties.pop(0)
                if full_since is not None:
                    # too close to call: emptied within minutes, or never clearly above the sensor's noise
                    self._truth("container-full", device_id, full_since, emptied_at,
                                ambiguous=emptied_at - full_since < 45 * 60 or full_peak < 80 + 2 * FILL_NOISE)
                    full_since = None
                fill = rng.uniform(0, 4)
            true_fills.append((t, fill))
            if full_since is None and fill >= 80:
                full_since, full_peak = t, fill
            elif full_since is not None:
                full_peak = max(full_peak, fill)
            battery -= drain * (t - prev_t)
            if battery_near_since is None and battery < 18.5:
                battery_near_since = t  # the gauge's noise may read below 15% from here on
            if battery_low_since is None and battery < 15:
                battery_low_since = t
                if battery_near_since is not None:
                    self._truth("sensor-battery-low", device_id, battery_near_since, t, ambiguous=True)
            if battery_low_since is not None and t - battery_low_since > replaced_after:
                self._truth("sensor-battery-low", device_id, battery_low_since, t)
                battery_low_since, battery_near_since, battery = None, None, 100.0
            prev_t = t
            temperature = 14 + 7 * math.sin((t / 86400 - 0.4) * 2 * math.pi) + rng.gauss(0, 0.8)
            if fire and fire[0] <= t < fire[1] + 3 * 3600:
                since = t - fire[0]
                if since < 20 * 60:
                    temperature += (since / (20 * 60)) * 70
                elif t < fire[1]:
                    temperature += 70 + rng.uniform(-5, 10)
                else:  # cooling down over three hours, through 60 and 45 °C with the noise
                    temperature += 70 * (1 - (t - fire[1]) / (3 * 3600))
                temperature += rng.gauss(0, 3)  # flames flicker
            tilted = bool(tilt and tilt[0] <= t < tilt[1])
            if tilt and not tilted and not glitched and rng.random() < 0.004:
                tilted = glitched = True  # a glitch of the tilt sensor (a truck's lift shakes it), one reading
            else:
                glitched = False
            if silent is not None and silent[0] <= t < silent[1]:
                if not silent_reported and last_report is not None:
                    silent_reported = True
                    self._truth("sensor-silent", device_id, last_report + 3.5 * CONTAINER_EVERY_S, silent[1])
            elif rng.random() < 0.02:  # a radio message lost
                lost_in_a_row += 1
                if lost_in_a_row == 3 and last_report is not None:  # three missed reports: silent, just
                    self._truth("sensor-silent", device_id, last_report + 3.5 * CONTAINER_EVERY_S,
                                t + CONTAINER_EVERY_S, ambiguous=True)
            else:
                lost_in_a_row = 0
                at_time = self.start + timedelta(seconds=t)
                noisy_fill = min(100.0, max(0.0, fill + rng.gauss(0, FILL_NOISE)))
                self._send(Reading(device_id, at_time, at_time, _key(device_id, t), "container",
                                   fill_pct=round(noisy_fill, 1), distance_mm=round(1200 * (1 - noisy_fill / 100)),
                                   temperature_c=round(temperature, 1),
                                   battery_pct=round(max(0.0, battery + rng.gauss(0, 0.8)), 1), tilted=tilted),
                           at_time + timedelta(seconds=rng.uniform(0.5, 3)))
                last_report = t
                if fire and not fire_reported and round(temperature, 1) >= 60:  # the fire as its sensor tells it
                    fire_reported = True
                    self._truth("container-fire", device_id, t, fire[1] + 3 * 3600)
            t += CONTAINER_EVERY_S + rng.uniform(-5, 5)
        if tilt:
            self._truth("container-tilted", device_id, tilt[0], tilt[1])
        if full_since is not None:
            self._truth("container-full", device_id, full_since, seconds, ambiguous=full_peak < 80 + 2 * FILL_NOISE)
        if battery_low_since is not None:
            self._truth("sensor-battery-low", device_id, battery_low_since, seconds)
        elif battery_near_since is not None:
            self._truth("sensor-battery-low", device_id, battery_near_since, seconds, ambiguous=True)

    def _span(self, rng: random.Random, chance: float, shortest: float, longest: float) -> tuple[float, float] | None:
        if rng.random() >= chance:
            return None
        start = rng.uniform(1, self.days - 2) * 86400
        return start, start + rng.uniform(shortest, longest)

    def _truth(self, rule_id: str, subject: str, start_s: float, end_s: float, *, ambiguous: bool = False) -> None:
        self.truth.append(TruthEvent(rule_id, subject, self.start + timedelta(seconds=start_s),
                                     self.start + timedelta(seconds=end_s), ambiguous))

    def _send(self, reading: Reading, arrival: datetime) -> None:
        self._arrivals.append(_Arrival(arrival, reading))

    # -- households and rounds -------------------------------------------------------------------------

    def _household(self, index: int, rng: random.Random) -> dict[str, Any]:
        minx, miny, maxx, maxy = self.inner.bounds
        while True:
            lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if contains_xy(self.inner, lon, lat) and not contains_xy(self.school_slow, lon, lat):
                break
        return {"id": f"MH-{index:04d}", "tag": f"E2004100{index:08d}", "address": f"Eixample {index}",
                "lat": round(lat, 6), "lon": round(lon, 6), "service_area": "Eixample",
                "days": list(SCHEDULES[index % len(SCHEDULES)]), "window": "06:00-12:00"}

    def _rounds(self, rng: random.Random) -> list[dict[int, list[tuple[dict[str, Any], bool]]]]:
        """Per truck, per day of the month: its households, and whether each is skipped (a missed one)."""
        rounds: list[dict[int, list[tuple[dict[str, Any], bool]]]] = [{} for _ in self._trucks]
        for day in range(self.days):
            weekday = DAYS[(self.start.astimezone(MADRID).date() + timedelta(days=day)).weekday()]
            due = [h for h in self._households if weekday in h["days"]]
            for index, household in enumerate(due):
                truck = index % len(self._trucks)
                rounds[truck].setdefault(day, []).append((household, rng.random() < 0.025))
        return rounds

    def _missed_collections(self, rounds: list[dict[int, list[tuple[dict[str, Any], bool]]]]) -> None:
        lifted: dict[str, list[datetime]] = {}
        for arrival in self._arrivals:
            r = arrival.reading
            if r.event == "bin_lift" and r.rfid:
                lifted.setdefault(r.rfid, []).append(r.time)
        open_misses: set[tuple[str, datetime]] = set()
        for truck_rounds in rounds:
            for day, stops in sorted(truck_rounds.items()):
                date = self.start.astimezone(MADRID).date() + timedelta(days=day)
                window_end = datetime.combine(date, time(12, 0), MADRID)
                for household, skipped in stops:
                    if skipped:
                        after = [t for t in lifted.get(household["tag"], []) if t > window_end]
                        end = min(after) if after else self.end
                        subject = f"household:{household['id']}"
                        if (subject, end) in open_misses:
                            continue  # missed again before any lift: the same incident, one more occurrence
                        open_misses.add((subject, end))
                        self.truth.append(TruthEvent("door-to-door", subject, window_end, end))

    # -- trucks ----------------------------------------------------------------------------------------

    def _truck_month(self, truck: Device, rounds: dict[int, list[tuple[dict[str, Any], bool]]],
                     rng: random.Random) -> None:
        position = self._random_point(rng)
        for day in range(self.days):
            date = self.start.astimezone(MADRID).date() + timedelta(days=day)
            shift_start = datetime.combine(date, time(6, 0), MADRID)
            shift_end = datetime.combine(date, time(13, 0), MADRID)
            position = self._truck_day(truck, rounds.get(day, []), shift_start, shift_end, position, rng)

    def _random_point(self, rng: random.Random) -> tuple[float, float]:
        minx, miny, maxx, maxy = self.inner.bounds
        while True:
            lon, lat = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            if contains_xy(self.inner, lon, lat):
                return lon, lat

    def _truck_day(self, truck: Device, stops: list[tuple[dict[str, Any], bool]], start: datetime, end: datetime,
                   position: tuple[float, float], rng: random.Random) -> tuple[float, float]:
        day = _TruckDay(self, truck, start, position, rng)
        plan: list[tuple[str, Any]] = []
        remaining = list(stops)
        here = position
        while remaining:  # a nearest-neighbour round of the day's households, a container stop between
            nearest = min(remaining, key=lambda s: (s[0]["lon"] - here[0]) ** 2 + (s[0]["lat"] - here[1]) ** 2)
            remaining.remove(nearest)
            plan.append(("household", nearest))
            here = (nearest[0]["lon"], nearest[0]["lat"])
            if rng.random() < 0.5:
                plan.append(("point", None))
        events = ["idle"] * (rng.random() < 0.25) + ["speed"] * (rng.random() < 0.3) + ["wander"] * (
            rng.random() < 0.2) + ["lunch"] * (rng.random() < 0.5) + ["dead_zone"] * (rng.random() < 0.2)
        for event in events:
            plan.insert(rng.randrange(len(plan) + 1) if event != "lunch" else len(plan), (event, None))
        for kind, what in plan:
            if day.now >= end:
                break
            if kind == "household":
                household, skipped = what
                day.drive_within((household["lon"], household["lat"]))
                if not skipped:
                    day.lift(household["tag"])
            elif kind == "point":
                day.drive_within(self._random_point(rng))
                if rng.random() < 0.4:
                    day.stop(rng.uniform(20, 120))  # a container emptied, a delivery van in the way
            elif kind == "idle":
                duration = rng.uniform(15, 35) * 60
                started = day.now
                day.stop(duration)
                self.truth.append(TruthEvent("truck-idling", truck.device_id, started, day.fixed_at))
            elif kind == "lunch":
                day.stop(30 * 60, ignition=False)
            elif kind == "speed":
                day.speed_through_school()
            elif kind == "wander":
                day.wander()
            elif kind == "dead_zone":
                day.dead_zone = (day.now, day.now + timedelta(seconds=rng.uniform(120, 360)))
        while day.now < end:
            day.drive_within(self._random_point(rng))
        return day.position


class _TruckDay:
    """One truck's shift, fix by fix."""

    def __init__(self, month: Month, truck: Device, start: datetime, position: tuple[float, float],
                 rng: random.Random) -> None:
        self.month, self.truck, self.now, self.position, self.rng = month, truck, start, position, rng
        self.dead_zone: tuple[datetime, datetime] | None = None
        self.outside_since: datetime | None = None
        self.fixed_at = start  # the time of the latest fix, at `position`
        self.speeding_through = False

    def fix(self, speed_kmh: float, *, ignition: bool = True, event: str | None = None, rfid: str | None = None,
            weight: float | None = None) -> None:
        month, rng = self.month, self.rng
        lon, lat = self.position
        if rng.random() < 0.0015:  # a multipath jump: one fix far from where the truck is
            distance, angle = rng.uniform(60, 150), rng.uniform(0, 2 * math.pi)
            lat += distance * math.cos(angle) / _METRES_PER_DEGREE
            lon += distance * math.sin(angle) / (_METRES_PER_DEGREE * 0.75)
        else:
            lat += rng.gauss(0, 4) / _METRES_PER_DEGREE
            lon += rng.gauss(0, 4) / (_METRES_PER_DEGREE * 0.75)
        reported_speed = rng.uniform(0, 1.2) if speed_kmh == 0 else max(0.0, speed_kmh + rng.gauss(0, 1))
        extra = MappingProxyType({"ignition": ignition})
        reading = Reading(self.truck.device_id, self.now, self.now, _key(self.truck.device_id, self.now.timestamp(),
                                                                          event), "truck",
                          round(lat, 6), round(lon, 6), round(reported_speed, 1), None, rfid=rfid, event=event,
                          weight_kg=weight, extra=extra if ignition or event else EMPTY)
        arrival = self.now + timedelta(seconds=rng.uniform(0.2, 2))
        if self.dead_zone and self.dead_zone[0] <= self.now < self.dead_zone[1]:
            arrival = self.dead_zone[1] + timedelta(seconds=rng.uniform(60, 180))  # buffered, uploaded late
        if event is not None or rng.random() >= 0.01:  # else a fix lost (a lift is buffered until sent)
            month._send(reading, arrival)
            if event is not None and rng.random() < 0.05:
                month._send(reading, arrival + timedelta(seconds=1))  # the same lift read twice
        self.fixed_at = self.now
        self.now += timedelta(seconds=TRUCK_EVERY_S)

    def drive_within(self, target: tuple[float, float]) -> None:
        """To `target` without leaving the district: straight when the way is inside it, else through a
        point from which both legs are (the district is not convex)."""
        inner = self.month.inner
        if not inner.contains(LineString([self.position, target])):
            for _ in range(200):
                via = self.month._random_point(self.rng)
                if inner.contains(LineString([self.position, via])) and inner.contains(LineString([via, target])):
                    self.drive_to(via)
                    break
        self.drive_to(target)

    def drive_to(self, target: tuple[float, float], speed_kmh: float | None = None) -> None:
        speed = speed_kmh or self.rng.uniform(15, 35)
        while True:
            lon, lat = self.position
            d_lat = (target[1] - lat) * _METRES_PER_DEGREE
            d_lon = (target[0] - lon) * _METRES_PER_DEGREE * 0.75
            distance = math.hypot(d_lat, d_lon)
            going = speed
            if not self.speeding_through and contains_xy(self.month.school_slow, lon, lat):
                going = min(speed, 15.0)  # drivers keep to the school zone's limit
            step = going / 3.6 * TRUCK_EVERY_S
            if distance <= step:
                self.position = target
                self.fix(going)
                return
            self.position = (lon + d_lon / distance * step / (_METRES_PER_DEGREE * 0.75),
                             lat + d_lat / distance * step / _METRES_PER_DEGREE)
            self.fix(going)
            self._follow_district()

    def _follow_district(self) -> None:
        inside = contains_xy(self.month.eixample, *self.position)
        if not inside and self.outside_since is None:
            self.outside_since = self.fixed_at
        elif inside and self.outside_since is not None:
            self.month.truth.append(TruthEvent("truck-outside-service-area", self.truck.device_id,
                                               self.outside_since, self.fixed_at,
                                               ambiguous=self.fixed_at - self.outside_since < timedelta(minutes=4)))
            self.outside_since = None

    def stop(self, seconds: float, ignition: bool = True) -> None:
        until = self.now + timedelta(seconds=seconds)
        while self.now < until:
            self.fix(0.0, ignition=ignition)

    def lift(self, tag: str) -> None:
        self.fix(0.0)
        self.fix(0.0, event="bin_lift", rfid=tag, weight=round(self.rng.uniform(2, 18), 1))
        if self.rng.random() < 0.02:  # a bin with a tag no household has
            unknown = f"E2FF{self.rng.getrandbits(48):012X}"
            self.fix(0.0, event="bin_lift", rfid=unknown, weight=round(self.rng.uniform(2, 18), 1))
            self.month.truth.append(TruthEvent("door-to-door", f"tag:{unknown}", self.now - timedelta(seconds=5),
                                               self.month.end))
        for _ in range(self.rng.randrange(4, 10)):
            self.fix(0.0)

    def speed_through_school(self) -> None:
        """Along the school zone's long axis at 32–40 km/h: twice its limit, for some 20 seconds."""
        minx, miny, maxx, maxy = self.month.school.bounds
        mid_lon = (minx + maxx) / 2
        self.drive_within((mid_lon, miny - 0.0012))
        self.speeding_through = True
        entered: datetime | None = None
        target = (mid_lon, maxy + 0.0004)  # just past the zone, still in the district
        speed = self.rng.uniform(32, 40)
        while self.position != target:
            last_inside = self.fixed_at
            self.drive_to_step(target, speed)
            inside = contains_xy(self.month.school, *self.position)
            if inside and entered is None:
                entered = self.fixed_at
            elif entered is not None and not inside:
                self.month.truth.append(TruthEvent("truck-overspeed-school-zone",
                                                   f"{self.truck.device_id}:school-zones/escola-diagonal",
                                                   entered, last_inside))
                entered = None
        self.speeding_through = False

    def drive_to_step(self, target: tuple[float, float], speed: float) -> None:
        lon, lat = self.position
        d_lat = (target[1] - lat) * _METRES_PER_DEGREE
        d_lon = (target[0] - lon) * _METRES_PER_DEGREE * 0.75
        distance = math.hypot(d_lat, d_lon)
        step = speed / 3.6 * TRUCK_EVERY_S
        if distance <= step:
            self.position = target
        else:
            self.position = (lon + d_lon / distance * step / (_METRES_PER_DEGREE * 0.75),
                             lat + d_lat / distance * step / _METRES_PER_DEGREE)
        self.fix(speed)
        self._follow_district()

    def wander(self) -> None:
        """Out of l'Eixample, north into Gràcia, for ten to twenty minutes, and back."""
        back = self.position
        _, _, _, maxy = self.month.eixample.bounds
        outside = (2.1560, maxy + 0.004)
        while contains_xy(self.month.eixample, *outside):
            outside = (outside[0], outside[1] + 0.002)
        self.drive_within((outside[0], maxy - 0.004))
        self.drive_to(outside, 30.0)
        self.stop(self.rng.uniform(8, 16) * 60, ignition=False)  # a delivery at the other district's depot
        self.drive_to((outside[0], maxy - 0.004), 30.0)
        self.drive_within(back)


def to_seconds(time_: datetime, origin: datetime) -> float:
    return (time_ - origin).total_seconds()


def iterate(readings: list[Reading]) -> Iterator[Reading]:
    yield from readings
