"""Two municipalities on one instance (real PostgreSQL, Mosquitto and SMTP): each with its own services,
organisations, rules and devices, containers of both at the very same street corner, and nothing of one
in any list, map, statistic, export, Open311 answer or e-mail of the other."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.console.auth import hash_password
from gateway.devices import Device
from gateway.embedded.ports import free_port
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from gateway.store.users import upsert_user
from tests.mail import Inbox, text_of
from tests.support import REPO, api_up, console_client, publish, running_gateway, sql, wait_until

KEY = "citizen-app-key"
CORNER = (41.4036, 2.1744)  # both cities' containers are here: nothing may link across
TOKENS = {"bcn": "bcn-token", "girona": "girona-token"}


def make_city(root: Path, jurisdiction: str, name: str, language: str, domain: str) -> None:
    folder = root / jurisdiction
    folder.mkdir(parents=True)
    (folder / "jurisdiction.yaml").write_text(
        f"name: {name}\nlanguage: {language}\ncontact: ajuntament@{domain}\nkey_service: https://{domain}/key\n",
        encoding="utf-8")
    shutil.copy(REPO / "services.yaml", folder / "services.yaml")
    shutil.copy(REPO / "calendar.yaml", folder / "calendar.yaml")
    shutil.copy(REPO / "holidays.txt", folder / "holidays.txt")
    organisations = (REPO / "organisations.yaml").read_text(encoding="utf-8")
    (folder / "organisations.yaml").write_text(re.sub(r"@([a-z.-]+)", rf"@\1.{domain}", organisations),
                                               encoding="utf-8")
    shutil.copytree(REPO / "rules", folder / "rules", ignore=shutil.ignore_patterns("tests"))


@dataclass
class Instance:
    http: httpx.Client
    settings: Settings
    inbox: Inbox

    def staff(self, jurisdiction: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[jurisdiction]}"}


@pytest.fixture
def instance(settings: Settings, tmp_path: Path, smtp: tuple[Inbox, int]) -> Iterator[Instance]:
    inbox, port = smtp
    root = tmp_path / "jurisdictions"
    make_city(root, "bcn", "Barcelona", "es", "bcn.example")
    make_city(root, "girona", "Girona", "ca", "girona.example")
    settings = settings.model_copy(update={
        "jurisdictions_dir": root, "api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY],
        "device_refresh_s": 0.2, "smtp_url": f"smtp://127.0.0.1:{port}", "mail_poll_s": 0.2,
        "api_tokens": [f"{TOKENS['bcn']}:operator:bcn-staff:bcn/", f"{TOKENS['girona']}:operator:gi-staff:girona/",
                       "sud-girona:operator:sud:girona/recollida-sud", "nowhere-token:viewer:lost"],
    })
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=10) as client:
            yield Instance(client, settings, inbox)


def report(instance: Instance, jurisdiction: str, email: str) -> int:
    answer = instance.http.post("/open311/v2/requests.json", data={
        "api_key": KEY, "jurisdiction_id": jurisdiction, "service_code": "container_full", "lat": str(CORNER[0]),
        "long": str(CORNER[1]), "description": f"Full, says a neighbour of {jurisdiction}", "email": email})
    assert answer.status_code == 200, answer.text
    return int(answer.json()[0]["service_request_id"])


def test_two_jurisdictions_stay_apart(instance: Instance) -> None:
    url = instance.settings.database_url
    bcn_report = report(instance, "bcn", "veina@bcn-people.example")
    girona_report = report(instance, "girona", "vei@girona-people.example")
    upsert_devices(url, [Device("C-BCN", "container", "container", "Provença 38", *CORNER, {"bin_depth_mm": 1200},
                                jurisdiction="bcn"),
                         Device("C-GIR", "container", "container", "Carrer Nou 1", *CORNER, {"bin_depth_mm": 1200},
                                jurisdiction="girona")])
    time.sleep(0.5)
    start = datetime.now(UTC) - timedelta(hours=1)
    publish(instance.settings.mqtt_url, [(f"containers/{device}/telemetry", json.dumps(
        {"ts": (start + timedelta(minutes=m)).isoformat(), "fill_pct": 90}))
        for device in ("C-BCN", "C-GIR") for m in (0, 30)])
    def device_incidents() -> list[tuple[Any, ...]]:
        return sql(url, "SELECT id, jurisdiction_id, rule_id, device_id FROM incidents WHERE source = 'device_rule' "
                        "ORDER BY id")

    wait_until(lambda: len(device_incidents()) == 2)
    rows = device_incidents()
    by_city = {row[1]: row for row in rows}
    assert {(r[1], r[2], r[3]) for r in rows} == {("bcn", "bcn/container-full", "C-BCN"),
                                                  ("girona", "girona/container-full", "C-GIR")}
    bcn_incident, girona_incident = by_city["bcn"][0], by_city["girona"][0]
    bcn_ids, girona_ids = {bcn_incident, bcn_report}, {girona_incident, girona_report}
    # each city's report is linked to its own city's incident at the same corner, not the other's
    links = dict(sql(url, "SELECT id, linked_to FROM incidents WHERE source = 'citizen'"))
    assert links == {bcn_report: bcn_incident, girona_report: girona_incident}
    # and a report made after both opened, the other way of linking
    late = report(instance, "girona", "vei@girona-people.example")
    assert sql(url, "SELECT linked_to FROM incidents WHERE id = %s", (late,)) == [(girona_incident,)]
    girona_ids.add(late)

    bcn, girona = instance.staff("bcn"), instance.staff("girona")
    # the staff API: lists, one incident, actions, stats, maps, devices
    for headers, own, other in ((bcn, bcn_ids, girona_ids), (girona, girona_ids, bcn_ids)):
        listed = {i["id"] for i in instance.http.get("/api/v1/incidents", headers=headers).json()["items"]}
        assert listed == own
        for incident in other:
            assert instance.http.get(f"/api/v1/incidents/{incident}", headers=headers).status_code == 404
            assert instance.http.post(f"/api/v1/incidents/{incident}/actions", headers=headers,
                                      json={"action": "acknowledge"}).status_code == 404
        assert instance.http.get("/api/v1/stats", headers=headers).json()["total"]["incidents"] == len(own)
        features = instance.http.get("/api/v1/map/incidents.geojson", headers=headers).json()["features"]
        assert {f["properties"]["id"] for f in features} == own
    assert [d["device_id"] for d in instance.http.get("/api/v1/devices", headers=bcn).json()["items"]] == ["C-BCN"]
    assert instance.http.get("/api/v1/devices/C-GIR", headers=bcn).status_code == 404
    assert instance.http.get("/api/v1/devices/C-GIR/telemetry", headers=bcn).status_code == 404
    positions = instance.http.get("/api/v1/map/devices.geojson", headers=girona).json()["features"]
    assert {f["properties"]["device_id"] for f in positions} <= {"C-GIR"}
    assert {o["slug"] for o in instance.http.get("/api/v1/organisations", headers=bcn).json()["items"]} >= {
        "recollida-sud"}
    # a partner of Girona sees Girona's incidents routed to it, and none of Barcelona's
    # a token of no jurisdiction served here opens nothing (and is not a 500)
    assert instance.http.get("/api/v1/incidents", headers={"Authorization": "Bearer nowhere-token"}).status_code == 401
    partner = {"Authorization": "Bearer sud-girona"}
    assert {i["id"] for i in instance.http.get("/api/v1/incidents", headers=partner).json()["items"]} == girona_ids

    # Open311: one endpoint per jurisdiction, with its discovery document
    for jurisdiction, own in (("bcn", bcn_ids), ("girona", girona_ids)):
        listed = instance.http.get("/open311/v2/requests.json", params={"jurisdiction_id": jurisdiction}).json()
        assert {int(r["service_request_id"]) for r in listed} == own
        discovery = instance.http.get("/open311/v2/discovery.json", params={"jurisdiction_id": jurisdiction}).json()
        assert discovery["contact"] == f"ajuntament@{jurisdiction}.example"
        assert discovery["endpoints"][0]["url"].endswith("/open311/v2")
    assert instance.http.get(f"/open311/v2/requests/{girona_report}.json",
                             params={"jurisdiction_id": "bcn"}).status_code == 404
    missing = instance.http.get("/open311/v2/requests.json")
    assert missing.status_code == 400 and "jurisdiction_id" in missing.json()[0]["description"]
    assert instance.http.get("/open311/v2/services.json", params={"jurisdiction_id": "nowhere"}).status_code == 404
    xml = instance.http.get("/open311/v2/discovery.xml", params={"jurisdiction_id": "girona"})
    assert xml.status_code == 200 and "<discovery>" in xml.text and "<endpoint>" in xml.text

    # the console: queue, map, statistics and their CSVs, device pages
    for name, jurisdiction in (("ona", "bcn"), ("pau", "girona"), ("nil", "")):
        upsert_user(url, name, hash_password(f"{name}-password-1"), "operator", None, jurisdiction)
    # an account of no municipality served here
    with closing(console_client(base_of(instance), "nil", "nil-password-1")) as nil:
        assert nil.get("/console/incidents").status_code == 403
    with closing(console_client(base_of(instance), "ona", "ona-password-1")) as ona:
        queue = ona.get("/console/incidents").text
        assert all(f'data-incident="{i}"' in queue for i in bcn_ids)
        assert not any(f'data-incident="{i}"' in queue for i in girona_ids)
        assert ona.get(f"/console/incidents/{girona_incident}").status_code == 404
        data = ona.get("/console/map/data.json").json()
        assert {i["id"] for i in data["incidents"]} == bcn_ids
        assert [c["device_id"] for c in data["containers"]] == ["C-BCN"]
        assert "C-GIR" not in ona.get("/console/devices").text
        assert ona.get("/console/devices/C-GIR").status_code == 404
        by_category = ona.get("/console/stats/by_category.csv").text
        assert "container_full,2" in by_category
        fill = ona.get("/console/stats/fill_levels.csv").text
        assert sum(int(line.split(",")[1]) for line in fill.strip().splitlines()[1:]) == 1
        assert ona.get("/console/lab").status_code == 404  # not yet with several jurisdictions

    # e-mail: each city's organisations and reporters hear of their own city only, in its language
    wait_until(lambda: len(instance.inbox.messages) >= 6)
    time.sleep(1.0)
    cities_mailed = {"girona" if all("girona" in r for r in recipients) else "bcn"
                     for recipients, _ in instance.inbox.messages}
    assert cities_mailed == {"bcn", "girona"}
    for recipients, message in instance.inbox.messages:
        text = text_of(message)
        mentioned = {int(n) for n in re.findall(r"(?:/incidents/|#|núm\. |n\.º )(\d+)", text + message["Subject"])}
        if all("girona" in r for r in recipients):
            assert mentioned and mentioned <= girona_ids, (recipients, message["Subject"])
            assert any(word in text for word in ("incidència", "avís")), text  # Girona writes in Catalan
        else:
            assert all("bcn" in r for r in recipients), recipients
            assert mentioned and mentioned <= bcn_ids, (recipients, message["Subject"])
            assert any(word in text for word in ("incidencia", "aviso")), text  # Barcelona here in Spanish


def test_a_single_city_install_needs_no_jurisdiction(settings: Settings) -> None:
    settings = settings.model_copy(update={"api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY]})
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/open311/v2/services.json").status_code == 200
            # a client that sends a jurisdiction_id anyway is served the one city
            assert client.get("/open311/v2/services.json", params={"jurisdiction_id": "bcn.cat"}).status_code == 200
            assert client.get("/open311/v2/discovery.json").json()["endpoints"][0]["specification"].endswith(
                "GeoReport_v2")


def base_of(instance: Instance) -> str:
    return f"http://127.0.0.1:{instance.settings.api_port}"
