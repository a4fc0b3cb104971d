"""The reporter's side through their private follow link, on real PostgreSQL and the real HTTP API: they
write to the city, follow the staff's public answers, rate the outcome once it is resolved (once), a low
rating reopens the report for review, and ratings appear in the statistics. Nothing they write reaches
Open311."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from gateway.embedded.ports import free_port
from gateway.settings import Settings
from tests.mail import Inbox, text_of
from tests.support import api_up, follow_link, running_gateway, wait_until

KEY = "citizen-app-key"
STAFF = {"Authorization": "Bearer op-token"}


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[httpx.Client, Settings]]:
    settings = settings.model_copy(update={"api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY],
                                           "api_tokens": ["op-token:operator:clerk"]})
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client, settings


def _report(client: httpx.Client) -> int:
    answer = client.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "container_full", "lat": "41.4036", "long": "2.1744",
        "description": "Full again", "email": "marta@example.org", "first_name": "Marta"})
    assert answer.status_code == 200, answer.text
    return int(answer.json()[0]["service_request_id"])


def _link(settings: Settings, incident_id: int) -> str:
    return follow_link(settings.database_url, incident_id)


def test_a_reporter_writes_follows_and_rates_and_a_low_rating_reopens(api: tuple[httpx.Client, Settings]) -> None:
    client, settings = api
    report = _report(client)
    link = _link(settings, report)
    assert client.get(link).status_code == 200
    written = client.post(f"{link}/comment", data={"note": "It is still there, next to the bakery."},
                          files={"photo": ("corner.png", _png(), "image/png")})
    assert written.status_code == 303
    photo = re.search(r'href="[^"]*(/photos/[A-Za-z0-9_-]+\.jpg)" class="note-photo"', client.get(link).text)
    assert photo and client.get(photo.group(1)).headers["content-type"] == "image/jpeg"
    assert client.post(f"{link}/comment", data={"note": "and this"},
                       files={"photo": ("x.jpg", b"not an image", "image/jpeg")}).status_code == 400
    page = client.get(link).text
    assert "next to the bakery" in page and "Marta" not in page and "marta@" not in page
    history = client.get(f"/api/v1/incidents/{report}", headers=STAFF).json()["events"]
    assert [(e["actor"], e["public"]) for e in history if e["kind"] == "comment"] == [("reporter", False)]
    public = client.get(f"/open311/v2/requests/{report}.json").text + client.get(
        "/open311/v2/servicerequestupdates.json").text
    assert "bakery" not in public

    # not rated before it is resolved; the staff's public answer shows on the reporter's page
    early = client.post(f"{link}/rating", data={"score": "5"})
    assert early.status_code == 409 and "once it is resolved" in early.text
    client.post(f"/api/v1/incidents/{report}/actions", headers=STAFF,
                json={"action": "resolve", "note": "Emptied this morning.", "public": True})
    assert "Emptied this morning." in client.get(link).text
    assert client.post(f"{link}/rating", data={"score": "4", "comment": "Quick, thanks"}).status_code == 303
    rated = client.get(link).text
    assert 'id="rating">4/5' in rated and 'id="follow-rating"' not in rated
    again = client.post(f"{link}/rating", data={"score": "1"})
    assert again.status_code == 409 and "rated already" in again.text
    assert client.get(f"/api/v1/incidents/{report}", headers=STAFF).json()["status"] == "resolved"
    # what the reporter wrote and how they rated is theirs and staff's: no public response carries it
    public = "".join(client.get(path).text for path in (
        f"/open311/v2/requests/{report}.json", f"/open311/v2/requests/{report}.xml", "/open311/v2/requests.json",
        "/open311/v2/requests.xml", "/open311/v2/servicerequestupdates.json", "/open311/v2/servicerequestupdates.xml"))
    assert "Quick, thanks" not in public and "bakery" not in public and "4/5" not in public and "Marta" not in public

    # a low rating reopens another report for review
    second = _report(client)
    client.post(f"/api/v1/incidents/{second}/actions", headers=STAFF, json={"action": "close"})
    assert client.post(f"{_link(settings, second)}/rating", data={"score": "1", "comment": "Nobody came"}).status_code \
        == 303
    reopened = client.get(f"/api/v1/incidents/{second}", headers=STAFF).json()
    assert reopened["status"] == "open" and reopened["rating"] == 1
    assert [e["note"] for e in reopened["events"] if e["kind"] == "status"][-1] == "reopened for review: rated 1/5"

    stats = client.get("/api/v1/stats", headers=STAFF).json()["ratings"]
    assert stats["by_service_code"]["container_full"] == {"ratings": 2, "average": 2.5}
    assert stats["by_month"][datetime.now(UTC).strftime("%Y-%m")]["ratings"] == 2
    assert set(stats["by_organisation"]) == {"recollida-sud"}


def test_the_reporters_forms_refuse_bad_input(api: tuple[httpx.Client, Settings]) -> None:
    client, settings = api
    report = _report(client)
    link = _link(settings, report)
    assert client.post(f"{link}/comment", data={"note": "bad \x00 byte"}).status_code == 400
    assert client.post(f"{link}/comment", data={"note": "   "}).status_code == 400
    assert client.post(f"{link}/rating", data={"score": "9"}).status_code == 422
    assert client.post(f"{link}/rating", data={}).status_code == 400
    forged = link.rsplit("/", 1)[0] + "/forged-token"
    assert client.post(f"{forged}/comment", data={"note": "hello"}).status_code == 404
    assert client.post(f"{forged}/rating", data={"score": "5"}).status_code == 404
    history = client.get(f"/api/v1/incidents/{report}", headers=STAFF).json()["events"]
    assert [e for e in history if e["actor"] == "reporter"] == []


def test_channels_are_recorded_counted_and_one_contacts_reports_listed(api: tuple[httpx.Client, Settings]) -> None:
    client, _ = api
    web = _report(client)
    app = client.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "illegal_dumping", "address_string": "Plaça Reial 1", "channel": "app",
        "email": "Marta@Example.org"}).json()[0]["service_request_id"]
    phoned = client.post("/api/v1/incidents", headers=STAFF, json={
        "service_code": "container_damaged", "address": "Carrer Nou 3", "channel": "phone",
        "caller": {"name": "Pere", "phone": "+34 600 11 22 33", "email": "pere@example.org"}}).json()["id"]
    letter = client.post("/api/v1/incidents", headers=STAFF, json={
        "service_code": "container_damaged", "address": "Carrer Nou 5", "channel": "letter"}).json()["id"]
    assert client.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "illegal_dumping", "address_string": "x", "channel": "fax"}).status_code == 400
    assert client.post("/api/v1/incidents", headers=STAFF, json={
        "service_code": "container_damaged", "address": "y", "caller": {"email": "not an address"}}).status_code == 422
    channels = client.get("/api/v1/stats", headers=STAFF).json()["by_channel"]
    assert {k: v["incidents"] for k, v in channels.items()} == {"web": 1, "app": 1, "phone": 1, "letter": 1}

    def reports_of(contact: str) -> set[int]:
        items = client.get("/api/v1/incidents", headers=STAFF, params={"contact": contact}).json()["items"]
        return {i["id"] for i in items}

    assert reports_of("marta@example.org") == {web, int(app)}  # one contact history, whatever the case
    assert reports_of("600 112 233") == {phoned} and reports_of("+34600112233") == {phoned}
    assert reports_of("nobody@example.org") == set() and letter not in reports_of("pere@example.org")
    assert client.get("/api/v1/incidents", params={"contact": "12"}, headers=STAFF).status_code == 422
    caller = client.get(f"/api/v1/incidents/{phoned}", headers=STAFF).json()["reporter"]
    assert caller == {"name": "Pere", "phone": "+34 600 11 22 33", "email": "pere@example.org", "staff": "clerk",
                      "channel": "phone"}
    public = client.get("/open311/v2/requests.json").text
    assert "Pere" not in public and "600 11" not in public and "marta" not in public.lower()


def test_a_viewer_cannot_look_a_reporter_up(settings: Settings) -> None:
    settings = settings.model_copy(update={"api_enabled": True, "api_port": free_port(),
                                           "api_tokens": ["v-token:viewer:intern"]})
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        answer = httpx.get(f"{base}/api/v1/incidents", params={"contact": "marta@example.org"},
                           headers={"Authorization": "Bearer v-token"})
        assert answer.status_code == 403


def test_a_proposal_is_reported_routed_and_listed_like_a_fault(api: tuple[httpx.Client, Settings]) -> None:
    client, _ = api
    services = {s["service_code"]: s for s in client.get("/open311/v2/services.json").json()}
    assert services["improvement_proposal"]["group"] == "Proposals"
    created = client.post("/open311/v2/requests.json", data={
        "api_key": KEY, "service_code": "improvement_proposal", "lat": "41.4036", "long": "2.1744",
        "description": "A glass container at this corner, please"})
    assert created.status_code == 200, created.text
    proposal = int(created.json()[0]["service_request_id"])
    listed = client.get("/open311/v2/requests.json", params={"service_code": "improvement_proposal"}).json()
    assert [int(r["service_request_id"]) for r in listed] == [proposal]
    assert listed[0]["agency_responsible"].startswith("Citizen services")
    staff = client.get(f"/api/v1/incidents/{proposal}", headers=STAFF).json()
    assert (staff["organisation"], staff["priority"], staff["resolve_by"]) == ("citizen-services", "low", None)
    assert client.post(f"/api/v1/incidents/{proposal}/actions", headers=STAFF,
                       json={"action": "close", "note": "Added to next year's plan", "public": True}).status_code == 200
    assert client.get(f"/open311/v2/requests/{proposal}.json").json()[0]["status_notes"] == "Added to next year's plan"


def test_an_open311_client_posts_the_reporters_update(api: tuple[httpx.Client, Settings]) -> None:
    client, _ = api
    report = _report(client)
    update = {"api_key": KEY, "service_request_id": str(report), "email": "marta@example.org",
              "description": "Now there are bags next to it too."}
    posted = client.post("/open311/v2/servicerequestupdates.json", data=update,
                         files={"media": ("bags.png", _png(), "image/png")})
    assert posted.status_code == 200, posted.text
    update_id = int(posted.json()[0]["update_id"])
    history = client.get(f"/api/v1/incidents/{report}", headers=STAFF).json()["events"]
    mine = next(e for e in history if e["id"] == update_id)
    assert (mine["actor"], mine["public"], mine["note"]) == ("reporter", False, "Now there are bags next to it too.")
    assert mine["data"]["photo_url"].split("/photos/")[1].endswith(".jpg")
    assert "bags next to it" not in client.get("/open311/v2/servicerequestupdates.json").text
    assert client.post("/open311/v2/servicerequestupdates.xml", data={**update, "email": "someone@example.org"}
                       ).status_code == 403
    assert client.post("/open311/v2/servicerequestupdates.json", data={**update, "service_request_id": "424242"}
                       ).status_code == 404
    assert client.post("/open311/v2/servicerequestupdates.json", data={**update, "description": ""}).status_code == 400
    assert client.post("/open311/v2/servicerequestupdates.json", data={**update, "api_key": "nope"}).status_code == 403


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 10)).save(out, "PNG")
    return out.getvalue()


def test_each_side_of_the_conversation_hears_of_the_other(settings: Settings, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    settings = settings.model_copy(update={"api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY],
                                           "api_tokens": ["op-token:operator:clerk"], "mail_poll_s": 0.2,
                                           "smtp_url": f"smtp://127.0.0.1:{port}"})
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=10) as client:
            report = _report(client)
            client.post(f"/api/v1/incidents/{report}/comments", headers=STAFF,
                        json={"note": "We will empty it this afternoon.", "public": True})
            client.post(f"/api/v1/incidents/{report}/comments", headers=STAFF,
                        json={"note": "internal: the truck is late", "public": False})
            reply = wait_until(lambda: [m for m in inbox.to("marta@example.org") if "reply" in m["Subject"].lower()])
            assert "this afternoon" in text_of(reply[0]) and "/follow/" in text_of(reply[0])
            client.post(f"{_link(settings, report)}/comment", data={"note": "Thanks, it is blocking the pavement."})
            contractor = "incidencies@recollida-sud.example"
            message = wait_until(lambda: [m for m in inbox.to(contractor) if "wrote" in m["Subject"]])
            assert "blocking the pavement" in text_of(message[0]) and f"/console/incidents/{report}" in text_of(
                message[0])
            time.sleep(0.5)
            assert not any("truck is late" in text_of(m) for _, m in inbox.messages)
