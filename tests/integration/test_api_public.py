"""The public Open311 feed against the personal data device incidents carry: households' addresses, RFID
tags and plates. Device incidents are made as the gateway makes them (trucks' readings through MQTT and
the rules; a missed collection through the case store, as the collection sweep commits it), then every
public response is searched for those strings."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

import tests.integration.test_api as api_tests
from gateway.catalogue import load_catalogue
from gateway.devices import Device
from gateway.events import Finding
from gateway.store.devices import upsert_devices
from tests.integration.test_api import Api
from tests.integration.test_api_cases import apply
from tests.support import REPO, publish, scalar, sql, wait_until

api = api_tests.api  # the fixture: a gateway with its API on a fresh database

PLATE = "2290 HJX"  # the truck's name, as fleets name them
UNKNOWN_TAG = "E2003412DEADBEEF"
# rules/data/households.yaml: H-0001 is on Eixample's rounds, H-0003 in Gràcia
MISSED = ("Carrer de Mallorca 401", "E2003412010B0001")
WRONG_AREA = ("Carrer de Verdi 50", "E2003412010B0003")
CITIZEN_AT_HOME = "Carrer de València 310"
SECRETS = (PLATE, UNKNOWN_TAG, *MISSED, *WRONG_AREA, CITIZEN_AT_HOME)
INTERNAL = ("missed_collection", "unknown_tag", "vehicle_conduct", "container_overflow_forecast")


def test_the_shipped_catalogue_keeps_households_and_vehicles_internal() -> None:
    catalogue = load_catalogue(REPO / "services.yaml")
    assert {s.service_code for s in catalogue.services if not s.public} == set(INTERNAL)


def _truck_incidents(api: Api) -> None:
    """A truck out of its district, lifting an unregistered tag and a Gràcia household's bin."""
    url = api.settings.database_url
    upsert_devices(url, [Device("T-7", "truck", "truck", PLATE, attributes={"service_area": "Eixample"})])
    time.sleep(0.5)  # the gateway refreshes its registry every 0.2 s here
    start = datetime.now(UTC) - timedelta(hours=1)

    def fix(minute: int, **more: object) -> tuple[str, str]:
        reading = {"ts": (start + timedelta(minutes=minute)).isoformat(), "lat": 41.4040, "lon": 2.1570,
                   "speed_kmh": 10, **more}  # in Gràcia
        return "trucks/T-7/telemetry", json.dumps(reading)

    publish(api.settings.mqtt_url, [fix(0), fix(1), fix(2), fix(3, event="bin_lift", rfid=UNKNOWN_TAG),
                                     fix(4, event="bin_lift", rfid=WRONG_AREA[1]), fix(5)])
    wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents WHERE source = 'device_rule'") == 3)


def _public_bodies(api: Api) -> dict[str, str]:
    ids = [row[0] for row in sql(api.settings.database_url, "SELECT id FROM incidents ORDER BY id")]
    paths = [f"/open311/v2/{path}.{fmt}" for path, fmt in product(
        ["services", "requests", "servicerequestupdates",
         *(f"services/{code}" for code in INTERNAL), *(f"requests/{i}" for i in ids)], ["json", "xml"])]
    paths += [f"/open311/v2/requests.{fmt}?{query}" for fmt, query in product(["json", "xml"], [
        "status=open", "status=closed", f"service_code={','.join(INTERNAL)}",
        f"service_request_id={','.join(map(str, ids))}"])]
    bodies = {}
    for path in paths:
        response = api.http.get(path)
        assert response.status_code in (200, 404), (path, response.text)
        bodies[path] = response.text
    return bodies


def test_no_public_response_carries_an_address_tag_or_plate_of_a_device_incident(api: Api) -> None:
    url = api.settings.database_url
    _truck_incidents(api)
    now = datetime.now(UTC)
    apply(url, [Finding(  # as the collection rule's sweep finds a household not collected
        "door-to-door", "household:H-0001", "open", now - timedelta(minutes=30), "missed_collection",
        title=f"Missed collection at {MISSED[0]} on {now:%Y-%m-%d}",
        description=f"No lift of tag {MISSED[1]} between 06:00-12:00 on {now:%Y-%m-%d}.",
        lat=41.4036, lon=2.1744, address=MISSED[0], data={"household": "H-0001", "tag": MISSED[1]})])
    # A container incident (a public service) whose rendered texts name a plate and a tag: its public
    # title is the service's, and the notes the rule writes stay inside, opening and resolving.
    apply(url, [Finding("container-tilted", "C-0007", "open", now - timedelta(minutes=20), "container_damaged",
                        title=f"Container Provença 38 knocked over after a lift by {PLATE}",
                        description=f"Tilted after the lift of {WRONG_AREA[1]}", device_id="C-0007",
                        lat=41.3950, lon=2.1600, address="Carrer de Provença 38")])
    apply(url, [Finding("container-tilted", "C-0007", "resolve", now - timedelta(minutes=10), "container_damaged",
                        description=f"Put back up by {PLATE}", device_id="C-0007")])
    # staff notes marked public on an internal incident, and a citizen reporting in an internal service
    vehicle = int(scalar(url, "SELECT id FROM incidents WHERE service_code = 'vehicle_conduct'"))
    op = api.staff("operator")
    api.http.post(f"/api/v1/incidents/{vehicle}/comments", headers=op,
                  json={"note": f"Driver of {PLATE} spoken to", "public": True})
    api.http.post(f"/api/v1/incidents/{vehicle}/actions", headers=op,
                  json={"action": "resolve", "note": f"{PLATE} back in Eixample"})
    at_home = api.report(service_code="missed_collection", lat=None, long=None, address_string=CITIZEN_AT_HOME)
    assert at_home.json()[0]["service_notice"] == "this request is followed up by staff and is not published"

    internal_titles = [row[0] for row in sql(url, "SELECT title FROM incidents WHERE source = 'device_rule'")]
    assert any(PLATE in t for t in internal_titles) and any(UNKNOWN_TAG in t for t in internal_titles)
    assert any(MISSED[0] in t for t in internal_titles) and any(WRONG_AREA[0] in t for t in internal_titles)
    bodies = _public_bodies(api)
    for path, body in bodies.items():
        for secret in SECRETS:
            assert secret not in body, f"{secret!r} in {path}"
    # not vacuous: the public container incident is listed, under its service's name
    (listed,) = json.loads(bodies["/open311/v2/requests.json"])
    assert (listed["service_code"], listed["status"]) == ("container_damaged", "closed")
    assert listed["description"] == "Container damaged or knocked over" and listed["status_notes"] is None
    assert listed["address"] == "Carrer de Provença 38"
    updates = json.loads(bodies["/open311/v2/servicerequestupdates.json"])
    assert [(u["service_request_id"], u["status"], u["description"]) for u in updates] == [
        (listed["service_request_id"], "OPEN", ""), (listed["service_request_id"], "CLOSED", "")]
    # and staff still see everything
    staff_view = api.http.get(f"/api/v1/incidents/{vehicle}", headers=op).json()
    assert PLATE in staff_view["title"]


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_staff_set_the_public_title_of_a_device_incident(api: Api, fmt: str) -> None:
    url = api.settings.database_url
    apply(url, [Finding("container-full", "C-0001", "open", datetime.now(UTC), "container_full",
                        title="Container Provença 38 is 91% full", device_id="C-0001", lat=41.39, lon=2.16)])
    incident = int(scalar(url, "SELECT id FROM incidents"))
    path = f"/api/v1/incidents/{incident}/public_title"
    title = "Full container, crew on the way"
    set_title = api.http.put(path, headers=api.staff("operator"), json={"public_title": title})
    assert set_title.json() == {"id": incident, "public_title": title}
    shown = api.http.get(f"/open311/v2/requests/{incident}.{fmt}")
    assert title in shown.text and "91%" not in shown.text
    assert api.http.put(path, headers=api.staff("viewer"), json={"public_title": "x"}).status_code == 403
    assert api.http.put(path, headers=api.staff("operator"), json={"public_title": "x" * 201}).status_code == 422
    assert api.http.put("/api/v1/incidents/424242/public_title", headers=api.staff("operator"),
                        json={"public_title": "x"}).status_code == 404
    back = api.http.put(path, headers=api.staff("operator"), json={"public_title": None})
    assert back.json()["public_title"] is None
    assert "Container full or overflowing" in api.http.get(f"/open311/v2/requests/{incident}.{fmt}").text
    history = api.http.get(f"/api/v1/incidents/{incident}", headers=api.staff("viewer")).json()["events"]
    assert [(e["kind"], e["actor"], e["public"]) for e in history if e["kind"] == "edit"] == [
        ("edit", "staff:operator-user", False)] * 2
