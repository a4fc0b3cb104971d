"""Routes from VROOM on small cases: within capacity, every container once, an empty day, and road
distances from a routing service's table API (a local stand-in answering as OSRM does)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from gateway.plan.routes import (
    Due,
    Place,
    RoutingUnavailable,
    Truck,
    haversine_matrix,
    plan_routes,
    routing_service_matrix,
)

DEPOT = Place("Depot", 41.40, 2.20)
TRANSFER = Place("Transfer", 41.34, 2.146)
DUE = [Due(f"C{i}", f"Container {i}", 41.39 + i * 0.001, 2.16 + (i % 3) * 0.002, 1000) for i in range(9)]


def test_every_container_once_and_no_truck_over_its_capacity() -> None:
    trucks = [Truck("T1", "Truck 1", 4000), Truck("T2", "Truck 2", 4000), Truck("T3", "Truck 3", 4000)]
    plan = plan_routes("2026-03-03", DUE, trucks, DEPOT, TRANSFER)
    served = [s.id for r in plan.routes for s in r.stops]
    assert sorted(served) == sorted(d.id for d in DUE) and not plan.not_served
    assert all(r.litres <= r.truck.capacity_l for r in plan.routes) and len(plan.routes) == 3
    assert plan.distance_m > 0


def test_what_fits_no_truck_is_not_served_and_an_empty_day_is_an_empty_plan() -> None:
    plan = plan_routes("2026-03-03", DUE, [Truck("T1", "Truck 1", 2500)], DEPOT, TRANSFER)
    assert sum(len(r.stops) for r in plan.routes) == 2 and len(plan.not_served) == 7
    empty = plan_routes("2026-03-08", [], [Truck("T1", "Truck 1", 2500)], DEPOT, TRANSFER)
    assert empty.routes == [] and empty.not_served == [] and empty.distance_m == 0


class _Osrm(BaseHTTPRequestHandler):
    answer: ClassVar[dict[str, object]] = {}
    status = 200

    def do_GET(self) -> None:
        places = self.path.split("/table/v1/driving/")[1].split("?")[0].split(";")
        body = dict(self.answer) or {"code": "Ok",
                                     "distances": [[0 if a == b else 1000 for b in places] for a in places]}
        data = json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osrm() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Osrm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        _Osrm.answer, _Osrm.status = {}, 200


def test_road_distances_from_a_routing_service_are_what_the_routes_measure(osrm: str) -> None:
    plan = plan_routes("2026-03-03", DUE[:3], [Truck("T1", "Truck 1", 9000)], DEPOT, TRANSFER,
                       routing_service_matrix(osrm))
    assert plan.distance_m == 4 * 1000  # depot, three stops, transfer station: four legs of 1 km
    assert plan.distance_m != plan_routes("2026-03-03", DUE[:3], [Truck("T1", "Truck 1", 9000)], DEPOT,
                                          TRANSFER, haversine_matrix).distance_m


def test_a_routing_service_that_refuses_is_said_so(osrm: str) -> None:
    _Osrm.answer, _Osrm.status = {"code": "TooBig", "message": "Too many table coordinates"}, 400
    with pytest.raises(RoutingUnavailable, match="TooBig"):
        routing_service_matrix(osrm)([(41.4, 2.1), (41.3, 2.2)])
    with pytest.raises(RoutingUnavailable, match="did not answer"):
        routing_service_matrix("http://127.0.0.1:9")([(41.4, 2.1), (41.3, 2.2)])
