"""Device incidents and citizens' reports together: reports linked whichever came first, and the time to
resolve measured on one clock when the gateway works through a backlog."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import tests.integration.test_api as api_tests
from gateway.devices import Device
from gateway.events import Finding
from gateway.store.cases import CaseChanges, apply_findings
from gateway.store.devices import upsert_devices
from tests.integration.test_api import Api
from tests.support import publish, scalar, sql, wait_until

api = api_tests.api  # the fixture: a gateway with its API on a fresh database
# Where Api.report() reports by default, and 1 km north of it.
NEAR = (41.4036, 2.1744)
FAR = (41.4126, 2.1744)


def apply(url: str, findings: Sequence[Finding], **correlation: Any) -> CaseChanges:
    """The findings committed as the gateway commits a batch's."""
    async def run() -> CaseChanges:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            return await apply_findings(conn, findings, **correlation)

    return asyncio.run(run())


def container_full(action: str, at: datetime, lat: float = NEAR[0], lon: float = NEAR[1],
                   subject: str = "C-0001") -> Finding:
    return Finding("container-full", subject, action, at, "container_full", title=f"Container {subject} is 90% full",
                   description=f"Fill level 90% at {at.isoformat()}.", device_id=subject, lat=lat, lon=lon)


def _container_incident(api: Api) -> int:
    """A real 'container full' incident, from readings through MQTT and the rule."""
    url = api.settings.database_url
    upsert_devices(url, [Device("C-0001", "container", "container", "Provença 38", *NEAR, {"bin_depth_mm": 1200})])
    time.sleep(0.5)  # the gateway refreshes its registry every 0.2 s here
    start = datetime.now(UTC) - timedelta(hours=1)
    publish(api.settings.mqtt_url, [("containers/C-0001/telemetry", json.dumps(
        {"ts": (start + timedelta(minutes=m)).isoformat(), "fill_pct": 90})) for m in (0, 30)])
    return int(wait_until(lambda: scalar(url, "SELECT max(id) FROM incidents WHERE source = 'device_rule'")))


def _linked(api: Api, incident_id: int) -> int | None:
    incident = api.http.get(f"/api/v1/incidents/{incident_id}", headers=api.staff("viewer")).json()
    linked: int | None = incident["linked_to"]
    return linked


def _id(response: Any) -> int:
    return int(response.json()[0]["service_request_id"])


def test_a_report_made_before_the_device_incident_is_linked_when_it_opens(api: Api) -> None:
    near = _id(api.report())  # about 3 m from the container
    far = _id(api.report(lat=str(FAR[0])))
    other_service = _id(api.report(service_code="illegal_dumping"))
    # no position: there is no geocoder, so it cannot be placed near anything
    address_only = _id(api.report(lat=None, long=None, address_string="Carrer de Mallorca 401"))
    device_incident = _container_incident(api)
    assert {i: _linked(api, i) for i in (near, far, other_service, address_only)} == {
        near: device_incident, far: None, other_service: None, address_only: None}
    history = api.http.get(f"/api/v1/incidents/{device_incident}", headers=api.staff("viewer")).json()["events"]
    assert [e["note"] for e in history if e["kind"] == "link"] == [f"citizen report {near} linked"]
    # linked, it follows the device incident as a report linked the other way round does
    api.http.post(f"/api/v1/incidents/{device_incident}/actions", headers=api.staff("operator"),
                  json={"action": "resolve"})
    assert api.http.get(f"/open311/v2/requests/{near}.json").json()[0]["status"] == "closed"
    assert api.http.get(f"/open311/v2/requests/{far}.json").json()[0]["status"] == "open"


def test_linking_at_opening_keeps_to_the_distance_and_the_window(api: Api) -> None:
    url = api.settings.database_url
    now = datetime.now(UTC)
    old, recent, at_30_m, closed = (_id(api.report()) for _ in range(4))
    sql(url, "UPDATE incidents SET first_seen_at = %s WHERE id = %s", (now - timedelta(hours=2), old))
    sql(url, "UPDATE incidents SET lat = lat + 0.00027 WHERE id = %s", (at_30_m,))  # 30 m north
    api.http.post(f"/api/v1/incidents/{closed}/actions", headers=api.staff("operator"), json={"action": "close"})
    apply(url, [container_full("open", now)], correlation_distance_m=20, correlation_window_s=3600)
    device_incident = int(scalar(url, "SELECT id FROM incidents WHERE source = 'device_rule'"))
    linked = dict(sql(url, "SELECT id, linked_to FROM incidents WHERE source = 'citizen'"))
    assert linked == {old: None, recent: device_incident, at_30_m: None, closed: None}
    # one more occurrence of the same cause links nothing anew, and a report already linked stays put
    apply(url, [container_full("open", now + timedelta(minutes=5))], correlation_distance_m=100)
    assert dict(sql(url, "SELECT id, linked_to FROM incidents WHERE source = 'citizen'")) == linked
    # the defaults are the settings' (50 m, 24 h)
    apply(url, [container_full("open", now, subject="C-0002")])
    second = int(scalar(url, "SELECT max(id) FROM incidents WHERE source = 'device_rule'"))
    assert dict(sql(url, "SELECT id, linked_to FROM incidents WHERE source = 'citizen'")) == {
        **linked, old: second, at_30_m: second}


def test_the_median_time_to_resolve_of_a_backlog_is_on_the_device_clock(api: Api) -> None:
    # The gateway catches up on readings from three hours ago: the incident opens and resolves within
    # half an hour of device time, both committed now by the server's clock.
    url = api.settings.database_url
    opened = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    apply(url, [container_full("open", opened)])
    apply(url, [container_full("resolve", opened + timedelta(minutes=30))])
    # a citizen's report, resolved by staff: created and resolved on the database's clock
    report = _id(api.report(lat=str(FAR[0])))
    api.http.post(f"/api/v1/incidents/{report}/actions", headers=api.staff("operator"), json={"action": "resolve"})
    viewer = api.staff("viewer")
    stats = api.http.get("/api/v1/stats", headers=viewer).json()
    assert stats["by_source"]["device_rule"] == {"incidents": 1, "median_resolve_s": 1800.0, "overdue": 0}
    assert 0 <= stats["by_source"]["citizen"]["median_resolve_s"] < 60
    # the period selects incidents by the same clock: the device incident opened three hours ago
    period = {"start": (opened - timedelta(minutes=1)).isoformat(), "end": (opened + timedelta(minutes=1)).isoformat()}
    in_period = api.http.get("/api/v1/stats", headers=viewer, params=period).json()
    assert in_period["total"] == {"incidents": 1, "median_resolve_s": 1800.0, "overdue": 0}
