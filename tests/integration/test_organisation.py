"""The city's organisation on real PostgreSQL, Mosquitto and a real SMTP server (aiosmtpd) on loopback:
a container-full incident from a rule in a southern district goes to that district's contractor, who gets
an e-mail and sees it (and only what is theirs) in the API and the console; the citizen who reported the
same container gets a receipt and a closing notice; deadlines run on the working-hours calendar; mail
waits in the outbox while the server is down."""

from __future__ import annotations

import asyncio
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
from aiosmtpd.controller import Controller

from gateway.console.auth import hash_password
from gateway.devices import Device
from gateway.embedded.ports import free_port
from gateway.organisation.mail.send import MailSender, SmtpServer
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from gateway.store.organisations import set_member
from gateway.store.pool import open_pool
from gateway.store.users import upsert_user
from tests.mail import Inbox, html_of, text_of
from tests.support import api_up, console_client, publish, running_gateway, scalar, sql, wait_until

KEY = "citizen-app-key"
CITY_TOKEN = "city-token"
SUD_TOKEN = "sud-token"
NORD_TOKEN = "nord-token"
# Sagrada Família, in the Eixample (a southern district: Recollida Sud); and Nou Barris (northern: Nord).
EIXAMPLE = (41.4036, 2.1744)
NOU_BARRIS = (41.4420, 2.1770)
SUD_MAIL = "incidencies@recollida-sud.example"
NORD_MAIL = "avisos@recollida-nord.example"
CITIZEN = "jane.doe@example.org"


@dataclass
class City:
    http: httpx.Client
    settings: Settings
    inbox: Inbox

    def token(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def city(settings: Settings, smtp: tuple[Inbox, int]) -> Iterator[City]:
    inbox, port = smtp
    settings = settings.model_copy(update={
        "api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY], "device_refresh_s": 0.2,
        "api_tokens": [f"{CITY_TOKEN}:operator:dispatcher", f"{SUD_TOKEN}:operator:sud-bot:recollida-sud",
                       f"{NORD_TOKEN}:operator:nord-bot:recollida-nord"],
        "smtp_url": f"smtp://127.0.0.1:{port}", "mail_from": "avisos@ajuntament.example", "mail_poll_s": 0.2,
        "public_url": "https://wastegate.example",
    })
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=10) as client:
            yield City(client, settings, inbox)


def report(city: City, at: tuple[float, float], **fields: str) -> int:
    form = {"api_key": KEY, "service_code": "container_full", "lat": str(at[0]), "long": str(at[1]),
            "description": "Overflowing since yesterday", "email": CITIZEN, "first_name": "Jane", **fields}
    answer = city.http.post("/open311/v2/requests.json", data=form)
    assert answer.status_code == 200, answer.text
    return int(answer.json()[0]["service_request_id"])


def container_incident(city: City) -> int:
    """A real 'container full' incident from readings through MQTT and the rule, in the Eixample."""
    url = city.settings.database_url
    upsert_devices(url, [Device("C-0001", "container", "container", "Provença 38", *EIXAMPLE, {"bin_depth_mm": 1200})])
    time.sleep(0.5)
    start = datetime.now(UTC) - timedelta(hours=1)
    publish(city.settings.mqtt_url, [("containers/C-0001/telemetry", json.dumps(
        {"ts": (start + timedelta(minutes=m)).isoformat(), "fill_pct": 90})) for m in (0, 30)])
    return int(wait_until(lambda: scalar(url, "SELECT max(id) FROM incidents WHERE source = 'device_rule'")))


def test_a_rule_incident_goes_to_its_districts_contractor_who_alone_sees_it_and_the_reporter_hears(city: City) -> None:
    citizen_report = report(city, EIXAMPLE)
    incident = container_incident(city)
    staff = city.token(CITY_TOKEN)
    found = city.http.get(f"/api/v1/incidents/{incident}", headers=staff).json()
    assert found["organisation"] == "recollida-sud" and found["linked_to"] is None
    assert found["priority"] == "normal" and found["resolve_by"] is not None
    routed = [e for e in found["events"] if e["kind"] == "assignment"]
    assert routed and routed[0]["data"]["organisation"] == "recollida-sud"
    assert routed[0]["actor"] == "rule:container-full"
    assert city.http.get(f"/api/v1/incidents/{citizen_report}", headers=staff).json()["linked_to"] == incident

    # the contractor's e-mail: category, place and deadline in the subject, a link to the console
    mail = wait_until(lambda: [m for m in city.inbox.to(SUD_MAIL) if f"/console/incidents/{incident}" in text_of(m)])
    assert "Container full" in mail[0]["Subject"] and "due" in mail[0]["Subject"]
    assert f"https://wastegate.example/console/incidents/{incident}" in html_of(mail[0])
    assert not city.inbox.to(NORD_MAIL)

    # the citizen's receipt, with a private follow link that works (and a wrong one that does not)
    receipt = wait_until(lambda: city.inbox.to(CITIZEN))[0]
    assert f"#{citizen_report}" in receipt["Subject"]
    link = re.search(r"https://wastegate\.example(/follow/\d+/\S+)", text_of(receipt))
    assert link
    page = city.http.get(link.group(1))
    assert page.status_code == 200 and "Container full" in page.text and "Jane" not in page.text
    assert city.http.get(f"/follow/{citizen_report}/not-the-token").status_code == 404
    assert city.http.get(link.group(1).replace(f"/{citizen_report}/", f"/{incident}/")).status_code == 404

    # the contractor sees its incidents and nothing else; the other contractor sees none of them
    nord_report = report(city, NOU_BARRIS, email="")
    sud, nord = city.token(SUD_TOKEN), city.token(NORD_TOKEN)
    assert {i["id"] for i in city.http.get("/api/v1/incidents", headers=sud).json()["items"]} == {incident,
                                                                                                 citizen_report}
    assert {i["id"] for i in city.http.get("/api/v1/incidents", headers=nord).json()["items"]} == {nord_report}
    for path in (f"/api/v1/incidents/{incident}",):
        assert city.http.get(path, headers=nord).status_code == 404
    for body, path in (({"action": "acknowledge"}, "actions"), ({"note": "x"}, "comments"),
                       ({"of": nord_report}, "duplicate"), ({"organisation": "recollida-nord", "reason": "x"},
                                                            "reassign")):
        assert city.http.post(f"/api/v1/incidents/{incident}/{path}", headers=nord, json=body).status_code == 404
    assert city.http.put(f"/api/v1/incidents/{incident}/public_title", headers=nord,
                         json={"public_title": "x"}).status_code == 404
    nord_stats = city.http.get("/api/v1/stats", headers=nord).json()
    assert nord_stats["total"]["incidents"] == 1 and set(nord_stats["by_organisation"]) == {"recollida-nord"}
    features = city.http.get("/api/v1/map/incidents.geojson", headers=nord).json()["features"]
    assert [f["properties"]["id"] for f in features] == [nord_report]
    for path in ("/api/v1/devices", "/api/v1/devices/C-0001", "/api/v1/map/devices.geojson"):
        assert city.http.get(path, headers=nord).status_code == 404, path
    assert city.http.post("/api/v1/rules/check", headers=nord, json={"text": "[]"}).status_code == 404
    assert [o["slug"] for o in city.http.get("/api/v1/organisations", headers=nord).json()["items"]] == [
        "recollida-nord"]
    assert len(city.http.get("/api/v1/organisations", headers=staff).json()["items"]) >= 9

    # the contractor works it; resolving it closes the citizen's report, who is told with the public note
    assert city.http.post(f"/api/v1/incidents/{incident}/actions", headers=sud,
                          json={"action": "resolve", "note": "Emptied at 10:40."}).status_code == 200
    notice = wait_until(lambda: [m for m in city.inbox.to(CITIZEN) if "resolved" in m["Subject"]])
    assert f"#{citizen_report}" in notice[0]["Subject"] and "Jane" not in text_of(notice[0])
    opened = [m for m in city.inbox.to(CITIZEN) if m is not receipt and "resolved" not in m["Subject"]]
    assert opened == []
    # closing the resolved report does not tell the citizen a second time
    assert city.http.post(f"/api/v1/incidents/{citizen_report}/actions", headers=staff,
                          json={"action": "close"}).status_code == 200
    marker = report(city, EIXAMPLE, service_code="illegal_dumping")  # a later mail, to know the first was composed
    wait_until(lambda: [m for m in city.inbox.to(CITIZEN) if f"#{marker}" in m["Subject"]])
    assert [m["Subject"] for m in city.inbox.to(CITIZEN) if f"#{citizen_report}" in m["Subject"]] == [
        receipt["Subject"], notice[0]["Subject"]]
    # a reassignment is an action with a reason, in the history, and the new organisation is told
    reassigned = city.http.post(f"/api/v1/incidents/{nord_report}/reassign", headers=staff,
                                json={"organisation": "recollida-sud", "reason": "their truck is nearer"})
    assert reassigned.status_code == 200
    assert city.http.get(f"/api/v1/incidents/{nord_report}", headers=nord).status_code == 404
    history = city.http.get(f"/api/v1/incidents/{nord_report}", headers=sud).json()["events"]
    assert [e["note"] for e in history if e["kind"] == "assignment"][-1] == "their truck is nearer"
    wait_until(lambda: [m for m in city.inbox.to(SUD_MAIL) if f"/console/incidents/{nord_report}" in text_of(m)])
    assert city.http.post(f"/api/v1/incidents/{nord_report}/reassign", headers=staff,
                          json={"organisation": "recollida-sud", "reason": "again"}).status_code == 409
    assert city.http.post(f"/api/v1/incidents/{nord_report}/reassign", headers=staff,
                          json={"organisation": "nobody-at-all", "reason": "x"}).status_code == 422
    # a report closed as a duplicate tells its reporter too
    again = report(city, EIXAMPLE, service_code="illegal_dumping", email="joan@example.org")
    assert city.http.post(f"/api/v1/incidents/{again}/duplicate", headers=staff,
                          json={"of": marker}).status_code == 200
    closed = wait_until(lambda: [m for m in city.inbox.to("joan@example.org") if "closed" in m["Subject"]])
    assert f"#{again}" in closed[0]["Subject"]


def test_a_partners_webhook_gets_only_its_incidents(settings: Settings) -> None:
    received: list[dict[str, Any]] = []
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = settings.database_url
    sql(url, "INSERT INTO organisations (slug, name, kind, webhook_url) "
             "VALUES ('recollida-nord', 'Nord', 'partner', %s)", (f"http://127.0.0.1:{server.server_port}/hook",))
    settings = settings.model_copy(update={"api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY]})
    try:
        with running_gateway(settings):
            base = f"http://127.0.0.1:{settings.api_port}"
            wait_until(lambda: api_up(base))
            with httpx.Client(base_url=base, timeout=10) as client:
                city = City(client, settings, Inbox())
                wait_until(lambda: scalar(url, "SELECT count(*) FROM webhook_cursor"))
                sud = report(city, EIXAMPLE, email="")
                nord = report(city, NOU_BARRIS, email="")
                wait_until(lambda: {r["incident"]["id"] for r in received} == {nord} and len(received) >= 2)
                time.sleep(1.0)  # the other incident's events have been passed over, not delivered late
                assert {r["incident"]["id"] for r in received} == {nord} and sud != nord
                assert all(r["incident"]["organisation"] == "recollida-nord" for r in received)
    finally:
        server.shutdown()


def test_deadlines_cross_the_weekend_and_an_overdue_incident_is_flagged(settings: Settings) -> None:
    # Friday 4 December 2026, 14:00 in Barcelona: a container full must be resolved within one working
    # day, so by Monday 14:00 (the weekend does not count); a fire within two hours of any day
    # (`round_the_clock`: fires do not wait for office hours), so by Friday 16:00.
    friday = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)
    now = [friday]
    settings = settings.model_copy(update={"api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY],
                                           "api_tokens": [f"{CITY_TOKEN}:operator:dispatcher"]})
    with running_gateway(settings, clock=lambda: now[0]):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=10) as client:
            city = City(client, settings, Inbox())
            full = report(city, EIXAMPLE, email="")
            fire = report(city, EIXAMPLE, email="", service_code="container_fire")
            requests = {int(r["service_request_id"]): r for r in client.get(
                "/open311/v2/requests.json", params={"service_request_id": f"{full},{fire}"}).json()}
            assert datetime.fromisoformat(requests[full]["expected_datetime"]) == datetime(2026, 12, 7, 13, 0,
                                                                                          tzinfo=UTC)
            assert datetime.fromisoformat(requests[fire]["expected_datetime"]) == datetime(2026, 12, 4, 15, 0,
                                                                                          tzinfo=UTC)
            assert requests[full]["agency_responsible"].startswith("Recollida Sud")
            staff = city.token(CITY_TOKEN)

            def overdue() -> set[int]:
                items = client.get("/api/v1/incidents", headers=staff, params={"overdue": "true"}).json()["items"]
                return {i["id"] for i in items}

            assert overdue() == set()
            sql(settings.database_url, "INSERT INTO incidents (source, service_code, title, first_seen_at, "
                                       "last_seen_at) VALUES ('staff', 'container_full', 'no deadline', now(), now())")
            no_deadline = int(scalar(settings.database_url, "SELECT max(id) FROM incidents"))
            now[0] = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)  # Monday 09:30 in Barcelona
            assert overdue() == {fire}
            assert client.get(f"/api/v1/incidents/{fire}", headers=staff).json()["overdue"] is True
            on_time = client.get("/api/v1/incidents", headers=staff, params={"overdue": "false"}).json()["items"]
            assert {i["id"] for i in on_time} == {full, no_deadline}  # one without a deadline is never late
            now[0] = datetime(2026, 12, 7, 13, 30, tzinfo=UTC)
            assert overdue() == {full, fire}
            client.post(f"/api/v1/incidents/{fire}/actions", headers=staff, json={"action": "resolve"})
            assert overdue() == {full}
            stats = client.get("/api/v1/stats", headers=staff, params={
                "start": "2026-12-01T00:00:00Z", "end": "2026-12-08T00:00:00Z"}).json()
            assert stats["by_organisation"]["recollida-sud"]["overdue"] == 1
            # (the fire was resolved on the database's clock, before its deadline: not counted)
            fire_brigade = stats["by_organisation"]["fire-brigade-liaison"]
            assert (fire_brigade["incidents"], fire_brigade["overdue"]) == (1, 0)


def _outbox(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT status, attempts, last_error, refused FROM mail_outbox ORDER BY id")


def test_mail_waits_in_the_outbox_while_the_server_is_down_and_refusals_are_recorded(database_url: str) -> None:
    url = database_url
    port = free_port()
    for recipients, subject in ((["ops@example.org"], "Overdue"),
                                (["ops@example.org", "refuse-me@example.org"], "Overdue"),
                                (["refuse@example.org"], "Overdue"),
                                (["busy@example.org"], "Overdue"),
                                (["ops@example.org"], "Bad\rheader")):  # a subject no header can carry
        sql(url, "INSERT INTO mail_outbox (kind, recipients, subject, body_text, body_html) "
                 "VALUES ('digest', %s, %s, 'text', '<p>html</p>')", (recipients, subject))
    now = [datetime.now(UTC)]

    async def send() -> int:
        pool = await open_pool(url)
        try:
            return await MailSender(pool, SmtpServer.from_url(f"smtp://127.0.0.1:{port}"), "w@example.org",
                                    lambda: now[0]).send_due()
        finally:
            await pool.close()

    assert asyncio.run(send()) == 5
    assert [(s, a) for s, a, _, _ in _outbox(url)] == [("pending", 1)] * 5
    assert all("server unavailable" in error for _, _, error, _ in _outbox(url))
    assert asyncio.run(send()) == 0  # not due again before its wait
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        now[0] += timedelta(minutes=1)
        assert asyncio.run(send()) == 5
    finally:
        controller.stop()
    rows = _outbox(url)
    assert [row[0] for row in rows] == ["sent", "sent", "failed", "pending", "failed"]
    assert "450" in rows[3][2]  # greylisted: tried again later, not given up
    assert rows[4][2].startswith("cannot be sent")  # failed alone: the others were sent all the same
    now[0] += timedelta(days=3)  # the server gone for good: given up once the message is two days old
    assert asyncio.run(send()) == 1
    assert _outbox(url)[3][0] == "failed" and "gave up" in _outbox(url)[3][2]
    assert rows[1][3] == {"refuse-me@example.org": "550 5.1.1 no such mailbox here"}
    assert rows[2][2] == "every recipient was refused" and "refuse@example.org" in rows[2][3]
    assert [recipients for recipients, _ in inbox.messages] == [["ops@example.org"], ["ops@example.org"]]
    assert text_of(inbox.messages[0][1]).strip() == "text"


def test_an_unknown_organisation_is_refused_at_start_with_file_and_line(settings: Settings, tmp_path: Path) -> None:
    from gateway.organisation.routing import RoutingError

    services = tmp_path / "services.yaml"
    services.write_text(Path(settings.services_file).read_text(encoding="utf-8").replace(
        "responsible: street-cleaning", "responsible: street-cleanning"), encoding="utf-8")
    line = next(n for n, text in enumerate(services.read_text().splitlines(), 1) if "street-cleanning" in text)
    with pytest.raises(RoutingError) as refused, running_gateway(settings.model_copy(
            update={"services_file": services}), wait_for_mqtt=False):
        time.sleep(5)
    assert f"{services}:{line}: service illegal_dumping: unknown organisation 'street-cleanning'" in str(refused.value)


def test_a_rule_naming_an_unknown_organisation_is_refused_with_its_line(settings: Settings, tmp_path: Path) -> None:
    from gateway.rules.loader import RuleFileError

    rules = tmp_path / "rules"
    shutil.copytree(Path(settings.rules_dir) / "zones", rules / "zones")
    (rules / "full.yaml").write_text(
        "- id: full\n  kind: threshold\n  applies_to: {kinds: [container]}\n  condition: fill_pct > 80\n"
        "  incident:\n    service_code: container_full\n    title: full\n    organisation: nobody-here\n",
        encoding="utf-8")
    with pytest.raises(RuleFileError) as refused, running_gateway(settings.model_copy(
            update={"rules_dir": rules}), wait_for_mqtt=False):
        time.sleep(5)
    assert f"{rules / 'full.yaml'}:8: rule full: unknown organisation 'nobody-here'" in str(refused.value)


def test_a_bad_email_is_refused_on_input(city: City) -> None:
    answer = city.http.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "container_full", "lat": "41.40", "long": "2.17", "email": "jane at home"})
    assert answer.status_code == 400 and "email" in answer.json()[0]["description"]
    assert scalar(city.settings.database_url, "SELECT count(*) FROM incidents") == 0


def test_a_partners_member_sees_only_their_organisation_in_the_console(city: City) -> None:
    url = city.settings.database_url
    upsert_user(url, "pere", hash_password("pere-password-1"), "viewer", None)
    assert set_member(url, "recollida-nord", "pere", "operator")
    upsert_user(url, "dora", hash_password("dora-password-1"), "viewer", None)
    assert set_member(url, "collection-operations", "dora", "viewer")
    sud = report(city, EIXAMPLE, email="")
    nord = report(city, NOU_BARRIS, email="")
    with closing(console_client(base_of(city), "pere", "pere-password-1")) as pere:
        queue = pere.get("/console/incidents").text
        assert f'data-incident="{nord}"' in queue and f'data-incident="{sud}"' not in queue
        assert pere.get(f"/console/incidents/{sud}").status_code == 404
        assert pere.get(f"/console/incidents/{nord}").status_code == 200
        data = pere.get("/console/map/data.json").json()
        assert [i["id"] for i in data["incidents"]] == [nord] and data["trucks"] == data["containers"] == []
        for path in ("/console/devices", "/console/lab", "/console/stats/fill_levels.csv"):
            assert pere.get(path).status_code == 404, path
        by_organisation = pere.get("/console/stats/by_organisation.csv").text
        assert "recollida-nord" in by_organisation and "recollida-sud" not in by_organisation
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', pere.get(f"/console/incidents/{nord}").text)
        assert csrf
        acted = pere.post(f"/console/incidents/{sud}/action", data={"csrf_token": csrf.group(1), "action": "resolve"})
        assert acted.status_code == 404
        acted = pere.post(f"/console/incidents/{nord}/action", data={"csrf_token": csrf.group(1),
                                                                     "action": "acknowledge"})
        assert acted.status_code == 303
    # a department's member: the whole city
    with closing(console_client(base_of(city), "dora", "dora-password-1")) as dora:
        queue = dora.get("/console/incidents").text
        assert f'data-incident="{nord}"' in queue and f'data-incident="{sud}"' in queue


def test_orgs_cli_adds_lists_and_refuses_a_bad_address(database_url: str) -> None:
    import subprocess
    import sys

    env = {"WASTEGATE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}

    def wastegate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)

    added = wastegate("orgs", "add", "neteja-nord", "--kind", "partner", "--name", "Neteja Nord",
                      "--email", "Avisos@Neteja.example")
    assert added.returncode == 0, added.stderr
    assert "added neteja-nord (partner)" in added.stdout
    bad = wastegate("orgs", "add", "x", "--kind", "partner", "--email", "not an address")
    assert bad.returncode == 2 and "not an e-mail address" in bad.stderr
    assert wastegate("orgs", "add", "y", "--kind", "agency").returncode == 2
    upsert_user(database_url, "nina", hash_password("nina-password-1"), "viewer", None)
    assert wastegate("orgs", "member", "neteja-nord", "nina", "--role", "operator").returncode == 0
    missing = wastegate("orgs", "member", "neteja-nord", "nobody")
    assert missing.returncode == 1 and "no organisation" in missing.stderr
    listed = wastegate("orgs", "list")
    assert listed.returncode == 0 and "neteja-nord" in listed.stdout and "nina (operator)" in listed.stdout
    emails = sql(database_url, "SELECT emails FROM organisations WHERE slug = 'neteja-nord'")
    assert emails == [(["Avisos@neteja.example"],)]


def base_of(city: City) -> str:
    return f"http://127.0.0.1:{city.settings.api_port}"
