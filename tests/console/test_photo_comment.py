"""A photo attached to a comment in the console, over HTTP: stored without its metadata and linked from
the incident's history; a file that is not an image is a message on the page. And one citizen's reports,
found by their e-mail or phone."""

from __future__ import annotations

import io
import re
from contextlib import closing

import httpx
from PIL import Image

from tests.console.conftest import USERS, Console
from tests.support import console_client


def test_a_comment_with_a_photo(console: Console) -> None:
    created = httpx.post(f"{console.url}/open311/v2/requests.json", data={
        "api_key": "k", "service_code": "container_full", "lat": "41.4036", "long": "2.1744"})
    incident = int(created.json()[0]["service_request_id"])
    image = Image.new("RGB", (120, 90), (90, 90, 200))
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (41.0, 24.0, 13.0)})
    sent = io.BytesIO()
    image.save(sent, "JPEG", exif=exif)
    with closing(console_client(console.url, "olga", USERS["olga"][1])) as olga:
        page = olga.get(f"/console/incidents/{incident}")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf and 'id="comment-photo"' in page.text
        posted = olga.post(f"/console/incidents/{incident}/comment",
                           data={"csrf_token": csrf.group(1), "note": "The lid is broken", "public": "true"},
                           files={"photo": ("lid.jpg", sent.getvalue(), "image/jpeg")})
        assert posted.status_code == 303
        link = re.search(r'href="[^"]*(/photos/[A-Za-z0-9_-]+\.jpg)"[^>]*class="event-photo"',
                         olga.get(f"/console/incidents/{incident}").text)
        assert link
        back = Image.open(io.BytesIO(httpx.get(console.url + link.group(1)).content))
        assert back.getexif().get_ifd(0x8825) == {}
        bad = olga.post(f"/console/incidents/{incident}/comment",
                        data={"csrf_token": csrf.group(1), "note": "again"},
                        files={"photo": ("notes.jpg", b"not an image", "image/jpeg")})
        assert bad.status_code == 400 and "not a JPEG" in bad.text


def test_an_operator_finds_one_citizens_reports_and_a_viewer_cannot(console: Console) -> None:
    made = []
    contacts = (("anna@example.org", ""), ("Anna@Example.org", ""), ("", "+34 611 22 33 44"), ("b@example.org", ""))
    for email, phone in contacts:
        form = {"api_key": "k", "service_code": "container_full", "lat": "41.4036", "long": "2.1744"}
        form.update({k: v for k, v in (("email", email), ("phone", phone)) if v})
        answer = httpx.post(f"{console.url}/open311/v2/requests.json", data=form)
        made.append(int(answer.json()[0]["service_request_id"]))
    with closing(console_client(console.url, "olga", USERS["olga"][1])) as olga:
        by_email = olga.get("/console/incidents", params={"contact": "anna@example.org", "status": ""}).text
        assert {int(i) for i in re.findall(r'data-incident="(\d+)"', by_email)} == set(made[:2])
        by_phone = olga.get("/console/incidents", params={"contact": "611223344", "status": ""}).text
        assert {int(i) for i in re.findall(r'data-incident="(\d+)"', by_phone)} == {made[2]}
        assert olga.get("/console/incidents", params={"contact": "12"}).status_code == 400
    with closing(console_client(console.url, "vera", USERS["vera"][1])) as vera:
        assert vera.get("/console/incidents", params={"contact": "anna@example.org"}).status_code == 403
        assert 'id="filter-contact"' not in vera.get("/console/incidents").text


def test_a_report_taken_at_the_counter_with_a_photo(console: Console) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 200, 30)).save(picture, "WEBP")
    with closing(console_client(console.url, "olga", USERS["olga"][1])) as olga:
        form = olga.get("/console/incidents/new")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf and 'id="report-photo"' in form.text
        taken = olga.post("/console/incidents/new", data={
            "csrf_token": csrf.group(1), "service_code": "illegal_dumping", "address": "Carrer Nou 2",
            "channel": "counter", "caller_name": "Rosa"},
            files={"photo": ("sofa.webp", picture.getvalue(), "image/webp")})
        assert taken.status_code == 303
        incident = int(taken.headers["location"].rsplit("/", 1)[1])
        media_url = httpx.get(f"{console.url}/open311/v2/requests/{incident}.json").json()[0]["media_url"]
        served = httpx.get(console.url + media_url[media_url.index("/photos/"):])
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        refused = olga.post("/console/incidents/new", data={
            "csrf_token": csrf.group(1), "service_code": "illegal_dumping", "address": "Carrer Nou 2"},
            files={"photo": ("sofa.webp", b"not a picture", "image/webp")})
        assert refused.status_code == 400 and "not a JPEG" in refused.text
