"""Routes with VROOM (pyvroom): a vehicle-routing solver with per-vehicle start and end places, capacities
and a matrix given by the caller (haversine here, or a routing service's `table` when one is set), and
deterministic for the same input. Each truck leaves its depot, collects containers up to its capacity and
ends at the transfer station; a container that fits no truck is reported as not served, never dropped."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import vroom

EARTH_M = 6_371_008.8
SPEED_M_PER_S = 15 / 3.6  # a collection truck in town, for the durations VROOM also wants


@dataclass(frozen=True)
class Place:
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Due:
    """A container to empty: its place, how much it holds (litres, and kg when known) and why it is due."""

    id: str
    name: str
    lat: float
    lon: float
    litres: int
    kg: int = 0
    why: str = "scheduled"  # scheduled | forecast
    fill_pct: float | None = None


@dataclass(frozen=True)
class Truck:
    id: str
    name: str
    capacity_l: int
    capacity_kg: int = 0  # 0: weight is not limited
    depot: Place | None = None


@dataclass
class Route:
    truck: Truck
    start: Place
    end: Place
    stops: list[Due] = field(default_factory=list)
    distance_m: float = 0.0

    @property
    def litres(self) -> int:
        return sum(s.litres for s in self.stops)

    @property
    def kg(self) -> int:
        return sum(s.kg for s in self.stops)


@dataclass
class Plan:
    day: str
    routes: list[Route]
    not_served: list[Due]
    made_at: datetime | None = None

    @property
    def distance_m(self) -> float:
        return sum(r.distance_m for r in self.routes)


class RoutingUnavailable(RuntimeError):
    """The routing service did not give a distance matrix (unreachable, refused, or a table too big)."""


Matrix = Callable[[Sequence[tuple[float, float]]], list[list[int]]]  # (lat, lon) places → metres


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(h))


def haversine_matrix(places: Sequence[tuple[float, float]]) -> list[list[int]]:
    return [[round(haversine_m(a, b)) for b in places] for a in places]


def routing_service_matrix(url: str, timeout_s: float = 30.0) -> Matrix:
    """Road distances from a routing service's table API (OSRM's `/table/v1/driving`, which OpenRouteService
    and Valhalla's OSRM-compatible endpoints also answer), instead of straight lines."""
    import httpx

    def matrix(places: Sequence[tuple[float, float]]) -> list[list[int]]:
        where = ";".join(f"{lon:.6f},{lat:.6f}" for lat, lon in places)
        try:
            answer = httpx.get(f"{url.rstrip('/')}/table/v1/driving/{where}", params={"annotations": "distance"},
                               timeout=timeout_s)
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RoutingUnavailable(f"the routing service at {url} did not answer: {exc}") from None
        distances = body.get("distances") if isinstance(body, dict) else None
        if answer.status_code != 200 or not isinstance(distances, list) or len(distances) != len(places):
            code = body.get("code") if isinstance(body, dict) else answer.status_code
            raise RoutingUnavailable(f"the routing service at {url} gave no {len(places)}×{len(places)} distance "
                                     f"matrix ({code}; OSRM's --max-table-size must allow {len(places)} places)")
        return [[round(d) if d is not None else 10**7 for d in row] for row in distances]

    return matrix


def plan_routes(day: str, due: Sequence[Due], trucks: Sequence[Truck], depot: Place, transfer: Place,
                matrix: Matrix = haversine_matrix, exploration: int = 5) -> Plan:
    """A route per truck (depot → containers → transfer station) within each truck's capacity."""
    if not trucks or not due:
        return Plan(day, [], list(due))
    starts = [truck.depot or depot for truck in trucks]
    places = [(p.lat, p.lon) for p in starts] + [(transfer.lat, transfer.lon)] + [(d.lat, d.lon) for d in due]
    distances = matrix(places)
    problem = vroom.Input()
    problem.set_distances_matrix("truck", distances)
    problem.set_durations_matrix("truck", [[round(m / SPEED_M_PER_S) for m in row] for row in distances])
    end_index = len(starts)
    weighed = any(t.capacity_kg for t in trucks)
    for index, truck in enumerate(trucks):
        capacity = [truck.capacity_l] + ([truck.capacity_kg or 10**9] if weighed else [])
        problem.add_vehicle(vroom.Vehicle(id=index + 1, start=index, end=end_index, profile="truck",
                                          capacity=capacity))
    first_job = end_index + 1
    problem.add_job([vroom.Job(id=first_job + i, location=first_job + i,
                               pickup=[d.litres] + ([d.kg] if weighed else []))
                     for i, d in enumerate(due)])
    solution = problem.solve(exploration_level=exploration, nb_threads=1)
    routes = [Route(truck, starts[i], transfer) for i, truck in enumerate(trucks)]
    served: set[int] = set()
    for row in solution.routes.itertuples(index=False):
        route = routes[int(row.vehicle_id) - 1]
        if row.type == "job":
            job = int(row.id) - first_job
            route.stops.append(due[job])
            served.add(job)
    index_of = {id(d): first_job + i for i, d in enumerate(due)}
    for number, route in enumerate(routes):
        # Along the matrix the solver had: road distances when a routing service gave them.
        legs = [number, *(index_of[id(s)] for s in route.stops), end_index]
        route.distance_m = float(sum(distances[a][b] for a, b in itertools.pairwise(legs))) if route.stops else 0.0
    return Plan(day, [r for r in routes if r.stops], [d for i, d in enumerate(due) if i not in served])


def nearest_neighbour_m(start: Place, stops: Sequence[Due], end: Place) -> float:
    """The distance of a round driven stop to nearest stop, as the simulator's fixed rounds are."""
    here = (start.lat, start.lon)
    left = [(s.lat, s.lon) for s in stops]
    total = 0.0
    while left:
        nearest = min(left, key=lambda p: haversine_m(here, p))
        total += haversine_m(here, nearest)
        left.remove(nearest)
        here = nearest
    return total + haversine_m(here, (end.lat, end.lon))
