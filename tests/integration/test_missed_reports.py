"""A citizen's missed-collection report, posted through Open311 to the real gateway (Mosquitto, PostgreSQL,
the HTTP API), is answered before the POST returns from what the trucks told the ledger of that doorstep
today: collected (closed as not needed), not out when the truck passed (closed), not yet (open: the round
is in progress), missed (open for collection operations, linked to the rule's own incident). The answer
is a public note; nothing of the household, the tag or the truck is in it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.devices import Device
from gateway.embedded.ports import free_port
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from simulators.month import MADRID
from tests.support import REPO, api_up, follow_link, publish, running_gateway, scalar, sql, wait_until

KEY = "citizen-app-key"
STAFF = {"Authorization": "Bearer op-token"}
DAY = datetime(2026, 3, 2, tzinfo=MADRID)  # a Monday
HOUSEHOLDS = [
    {"id": "H-LIFTED", "tag": "E2000000000000A1", "address": "Carrer de Mallorca 401", "lat": 41.4036,
     "lon": 2.1744, "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
    {"id": "H-NOT-OUT", "tag": "E2000000000000B2", "address": "Carrer de València 310", "lat": 41.3963,
     "lon": 2.1650, "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
    {"id": "H-LATER", "tag": "E2000000000000C3", "address": "Carrer de Girona 20", "lat": 41.3900,
     "lon": 2.1740, "service_area": "Eixample", "days": ["mon"], "window": "06:00-12:00"},
    {"id": "H-MISSED", "tag": "E2000000000000D4", "address": "Carrer del Bruc 150", "lat": 41.3990,
     "lon": 2.1640, "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
    # H-LATER's neighbour, 15 m away: its driver pressed "bin not out", which says nothing of H-LATER
    {"id": "H-NEIGHBOUR", "tag": "E2000000000000E5", "address": "Carrer de Girona 22", "lat": 41.39013,
     "lon": 2.17400, "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
]


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at


def local(hour: int, minute: int) -> datetime:
    return DAY.replace(hour=hour, minute=minute).astimezone(UTC)


def fix(at: datetime, lat: float, lon: float, **more: Any) -> tuple[str, bytes]:
    return "trucks/T-EIX/telemetry", json.dumps({"ts": at.isoformat(), "lat": lat, "lon": lon, "speed_kmh": 12.0,
                                                 **more}).encode()


@pytest.fixture
def city(settings: Settings, tmp_path: Path) -> Iterator[tuple[httpx.Client, Settings, Clock]]:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    (rules / "data" / "households.yaml").write_text(json.dumps({"households": HOUSEHOLDS}), encoding="utf-8")
    settings = settings.model_copy(update={
        "api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY], "rules_dir": rules,
        "api_tokens": ["op-token:operator:clerk", "viewer-token:viewer:analyst",
                       "partner-token:operator:contractor:/manteniment-contenidors"],
        "sweep_s": 0.3, "ledger_s": 0.3, "ledger_late_s": 400 * 86400.0})
    upsert_devices(settings.database_url, [Device("T-EIX", "truck", "truck", "4417 KLM",
                                                  attributes={"service_area": "Eixample"})])
    clock = Clock(local(8, 50))  # the gateway first sees the households before their windows end
    with running_gateway(settings, clock):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        publish(settings.mqtt_url, [
            fix(local(7, 41), 41.40355, 2.17435),
            fix(local(7, 42), 41.40362, 2.17441, event="bin_lift", rfid="E2000000000000A1", weight_kg=11.0),
            fix(local(7, 40), 41.39632, 2.16505),  # past the second door: nothing lifted
            fix(local(8, 10), 41.41000, 2.18000),  # far from the others
            fix(local(8, 20), 41.39008, 2.17400, event="bin_not_out", rfid="E2000000000000E5"),
        ])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") == 5)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM rule_state "
                                                         "WHERE subject LIKE 'household:%%'") == 5)
        clock.at = local(10, 30)  # the 09:00 windows and their grace have ended; the 12:00 one has not
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM incidents "
                                                         "WHERE subject = 'household:H-MISSED'") == 1)
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client, settings, clock


def report(client: httpx.Client, **where: str) -> int:
    answer = client.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "missed_collection", "description": "Nobody came for my bin",
        "email": "jordi@example.org", **where})
    assert answer.status_code == 200, answer.text
    return int(answer.json()[0]["service_request_id"])


def _link(settings: Settings, incident_id: int) -> str:
    return follow_link(settings.database_url, incident_id)


def public_notes(settings: Settings, incident_id: int) -> list[str]:
    return [row[0] for row in sql(settings.database_url,
                                  "SELECT note FROM incident_events WHERE incident_id = %s "
                                  "AND public AND actor = 'system:ledger' ORDER BY id", (incident_id,))]


def test_collected_the_report_is_closed_with_the_lift_as_evidence(city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, settings, _ = city
    incident_id = report(client, address_string="Carrer de Mallorca, 401")
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=STAFF).json()
    assert incident["status"] == "closed"
    notes = public_notes(settings, incident_id)
    assert notes[-1] == ("Collected at 07:42 on the Eixample round, 11 kg. We are closing this report as not "
                         "needed; reply to reopen it if your bin is still full.")
    for private in ("E2000000000000A1", "H-LIFTED", "4417", "T-EIX", "Mallorca"):
        assert private not in notes[-1]
    follow = client.get(_link(settings, incident_id))  # the reporter's own page: the answer is there
    assert follow.status_code == 200 and "Collected at 07:42 on the Eixample round, 11 kg." in follow.text
    reopened = client.post(f"/api/v1/incidents/{incident_id}/actions", headers=STAFF,
                           json={"action": "reopen", "note": "the bin is still full"})
    assert reopened.status_code == 200, reopened.text


def test_not_put_out_the_report_says_when_the_truck_passed(city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, settings, _ = city
    incident_id = report(client, lat="41.39630", long="2.16500")  # the reporter's phone, a few metres off
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=STAFF).json()["status"] == "closed"
    assert public_notes(settings, incident_id)[-1].startswith("The bin was not out when the truck passed at 07:40.")


def test_in_progress_the_report_stays_open(city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, settings, _ = city
    incident_id = report(client, address_string="carrer de girona 20")
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=STAFF).json()
    assert incident["status"] == "open"
    assert public_notes(settings, incident_id)[-1] == "Not collected yet: the round is in progress until 12:00."


def test_a_position_between_two_doors_is_not_answered(city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, settings, _ = city
    incident_id = report(client, lat="41.39006", long="2.17400")  # 7 m from H-LATER, 8 m from its neighbour
    assert public_notes(settings, incident_id) == []


def test_missed_the_report_is_routed_and_linked_to_the_rule_incident(
        city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, settings, _ = city
    rule_incident = scalar(settings.database_url, "SELECT id FROM incidents WHERE subject = 'household:H-MISSED'")
    incident_id = report(client, address_string="Carrer del Bruc 150")
    incident = client.get(f"/api/v1/incidents/{incident_id}", headers=STAFF).json()
    assert incident["status"] == "open"
    assert public_notes(settings, incident_id)[-1] == ("Missed: your collection was not made today. This has been "
                                                       "routed to collection operations.")
    linked = scalar(settings.database_url, "SELECT linked_to FROM incidents WHERE id = %s", (incident_id,))
    assert linked == rule_incident
    assert scalar(settings.database_url, "SELECT o.slug FROM incidents i JOIN organisations o "
                                         "ON o.id = i.organisation_id WHERE i.id = %s",
                  (incident_id,)) == "collection-operations"


def test_a_report_elsewhere_or_off_schedule_is_not_answered(city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, settings, _ = city
    incident_id = report(client, address_string="Carrer de Pau Claris 1")
    assert public_notes(settings, incident_id) == []
    assert client.get(f"/api/v1/incidents/{incident_id}", headers=STAFF).json()["status"] == "open"


def test_the_ledger_api_its_csv_coverage_and_the_collection_figures(
        city: tuple[httpx.Client, Settings, Clock]) -> None:
    client, _, _ = city
    day = DAY.date().isoformat()
    rows = client.get("/api/v1/ledger", params={"date": day}, headers=STAFF).json()["rows"]
    assert {r["stop_id"]: r["status"] for r in rows} == {
        "H-LIFTED": "lifted", "H-NOT-OUT": "not_presented", "H-LATER": "pending", "H-MISSED": "missed",
        "H-NEIGHBOUR": "not_presented"}
    lifted = next(r for r in rows if r["stop_id"] == "H-LIFTED")
    assert lifted["lifted_at"].startswith(f"{day}T07:42") and lifted["weight_kg"] == 11.0 and lifted["truck"] == "T-EIX"
    csv_text = client.get("/api/v1/ledger", params={"date": day, "format": "csv", "truck": "T-EIX"}, headers=STAFF)
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert [line.split(",")[4] for line in csv_text.text.splitlines()[1:]] == ["H-LIFTED", "H-NEIGHBOUR", "H-NOT-OUT"]
    coverage = client.get("/api/v1/ledger/coverage", params={"date": day},
                          headers={"Authorization": "Bearer viewer-token"}).json()["rounds"]
    assert coverage[0]["round"] == "Eixample" and coverage[0]["due"] == 5 and coverage[0]["served_share"] == 0.6
    by_hour = {h["by"]: h["share"] for h in coverage[0]["by_hour"]}
    assert (by_hour["07:00"], by_hour["08:00"], by_hour["09:00"]) == (0, 0.4, 0.6)
    stats = client.get("/api/v1/stats", headers=STAFF).json()["collection"]
    assert (stats["due"], stats["missed"], stats["missed_share_of_due"]) == (4, 1, 0.25)
    assert stats["set_out_rate_by_street"] == {}  # one household per street: its rate would be theirs
    assert stats["kg_by_round"]["Eixample"]["kg"] == 11.0
    # The rows name households' addresses: not for a viewer; nothing of the city's for a partner.
    assert client.get("/api/v1/ledger", params={"date": day},
                      headers={"Authorization": "Bearer viewer-token"}).status_code == 403
    assert client.get("/api/v1/ledger/coverage", params={"date": day},
                      headers={"Authorization": "Bearer partner-token"}).status_code == 404
    assert "collection" not in client.get("/api/v1/stats", headers={"Authorization": "Bearer partner-token"}).json()
    bad = client.get("/api/v1/ledger", params={"date": day, "until": "2026-01-01"}, headers=STAFF)
    assert bad.status_code == 400 and "before" in bad.json()["detail"]
    no_trucks = client.get("/api/v1/plan", params={"date": day}, headers=STAFF)
    assert no_trucks.status_code == 409 and "capacity_l" in no_trucks.json()["detail"]
