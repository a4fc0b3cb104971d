"""Photos through the real Open311 API on real PostgreSQL: a JPEG with GPS EXIF goes in and comes out
without any metadata, turned upright, with a thumbnail; an oversized photo, a text file named .jpg and a
decompression bomb are each a 400 with nothing stored; staff hide a photo with a reason."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from gateway.embedded.ports import free_port
from gateway.settings import Settings
from tests.support import api_up, running_gateway, scalar, wait_until

KEY = "citizen-app-key"
TOKEN = "op-token"
FORM = {"api_key": KEY, "service_code": "container_full", "lat": "41.40362", "long": "2.17441",
        "description": "Overflowing, see the photo"}
GPS_IFD = 0x8825
ORIENTATION = 0x0112


def phone_photo(width: int = 800, height: int = 600) -> bytes:
    """What a phone sends: a JPEG taken sideways (orientation 6), with the camera and where it was taken."""
    image = Image.new("RGB", (width, height), (200, 40, 40))
    for x in range(0, width, 40):  # some detail, so it is not all one colour
        image.paste((30, 30, 200), (x, 0, x + 20, height // 3))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"
    exif[0x0110] = "Model X"
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (41.0, 24.0, 13.0), 3: "E", 4: (2.0, 10.0, 28.0)})  # the reporter's street
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[httpx.Client, Settings]]:
    settings = settings.model_copy(update={
        "api_enabled": True, "api_port": free_port(), "open311_api_keys": [KEY],
        "api_tokens": [f"{TOKEN}:operator:moderator"], "photo_max_bytes": 2 * 1024 * 1024})
    with running_gateway(settings):
        base = f"http://127.0.0.1:{settings.api_port}"
        wait_until(lambda: api_up(base))
        with httpx.Client(base_url=base, timeout=20) as client:
            yield client, settings


def test_a_photo_comes_back_without_its_metadata_upright_and_with_a_thumbnail(
        api: tuple[httpx.Client, Settings]) -> None:
    client, settings = api
    sent = phone_photo()
    original = Image.open(io.BytesIO(sent))
    assert original.getexif().get_ifd(GPS_IFD)[2] == (41.0, 24.0, 13.0)  # the position is in what was sent
    created = client.post("/open311/v2/requests.json", data=FORM, files={"media": ("IMG_0001.jpg", sent, "image/jpeg")})
    assert created.status_code == 200, created.text
    request_id = created.json()[0]["service_request_id"]
    media_url = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]["media_url"]
    assert media_url.startswith(settings.base_url + "/photos/")
    served = client.get(media_url.removeprefix(settings.base_url))
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert b"PhoneMaker" not in served.content and b"Exif" not in served.content
    back = Image.open(io.BytesIO(served.content))
    assert dict(back.getexif()) == {} and back.getexif().get_ifd(GPS_IFD) == {}
    assert "icc_profile" not in back.info and "exif" not in back.info
    assert back.size == (600, 800)  # turned upright as its orientation said
    thumbnail = Image.open(io.BytesIO(client.get(media_url.removeprefix(settings.base_url).replace(
        ".jpg", "/thumbnail.jpg")).content))
    assert max(thumbnail.size) == 320 and dict(thumbnail.getexif()) == {}

    # moderation: hidden with a reason, the photo is no longer served nor listed; the reason is internal
    incident = int(request_id)
    hidden = client.post(f"/api/v1/incidents/{incident}/photos/hide", headers={"Authorization": f"Bearer {TOKEN}"},
                         json={"reason": "a face is recognisable"})
    assert hidden.status_code == 200 and hidden.json()["photos_hidden"] == 1
    assert client.get(media_url.removeprefix(settings.base_url)).status_code == 404
    assert client.get(f"/open311/v2/requests/{request_id}.json").json()[0]["media_url"] is None
    history = client.get(f"/api/v1/incidents/{incident}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [e["note"] for e in history["events"] if e["kind"] == "edit"] == ["photo hidden: a face is recognisable"]
    updates = client.get("/open311/v2/servicerequestupdates.json").text
    assert "recognisable" not in updates


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(out, "PNG")  # 900 megapixels in a few tens of kilobytes
    return out.getvalue()


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (10, 10)).save(out, "GIF")
    return out.getvalue()


def _noise_jpeg(side: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), bytes((i * 7919) % 251 for i in range(side * side * 3))).save(
        out, "JPEG", quality=100)
    return out.getvalue()


@pytest.mark.parametrize(("name", "content", "message"), [
    ("notes.jpg", b"these are my notes, not a photo\n" * 20, "not a JPEG, PNG, WebP or HEIC image"),
    ("bomb.png", _bomb(), "too many pixels"),
    ("huge.jpg", _noise_jpeg(1200), "larger than 2 MiB"),
    ("anim.gif", _gif(), "a GIF file is not accepted"),
])
def test_a_bad_photo_is_a_400_and_nothing_is_stored(api: tuple[httpx.Client, Settings], name: str, content: bytes,
                                                   message: str) -> None:
    client, settings = api
    answer = client.post("/open311/v2/requests.json", data=FORM, files={"media": (name, content, "image/jpeg")})
    assert answer.status_code == 400, answer.text
    assert message in answer.json()[0]["description"]
    assert scalar(settings.database_url, "SELECT count(*) FROM incidents") == 0
    assert scalar(settings.database_url, "SELECT count(*) FROM photos") == 0


def test_staff_attach_a_photo_with_a_comment(api: tuple[httpx.Client, Settings]) -> None:
    client, settings = api
    created = client.post("/open311/v2/requests.json", data=FORM)
    incident = int(created.json()[0]["service_request_id"])
    staff = {"Authorization": f"Bearer {TOKEN}"}
    added = client.post(f"/api/v1/incidents/{incident}/photos", headers=staff,
                        data={"note": "Emptied; the lid is broken", "public": "true"},
                        files={"media": ("lid.jpg", phone_photo(400, 300), "image/jpeg")})
    assert added.status_code == 201, added.text
    served = client.get(added.json()["photo_url"].removeprefix(settings.base_url))
    assert served.status_code == 200 and dict(Image.open(io.BytesIO(served.content)).getexif()) == {}
    events = client.get(f"/api/v1/incidents/{incident}", headers=staff).json()["events"]
    assert [e["data"]["photo_url"] for e in events if e["kind"] == "comment"] == [added.json()["photo_url"]]
    refused = client.post(f"/api/v1/incidents/{incident}/photos", headers=staff,
                          files={"media": ("notes.jpg", b"plain text", "image/jpeg")})
    assert refused.status_code == 400 and "not a JPEG" in refused.json()["detail"]
    missing = client.post("/api/v1/incidents/424242/photos", headers=staff,
                          files={"media": ("lid.jpg", phone_photo(40, 30), "image/jpeg")})
    assert missing.status_code == 404
    assert scalar(settings.database_url, "SELECT count(*) FROM photos") == 1


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_published_open311_client_reads_back_a_report_posted_with_a_photo(
        api: tuple[httpx.Client, Settings], fmt: str) -> None:
    """`georeport` (PyPI, a GeoReport v2 client) lists the services and reads the report back, its photo
    included. It has no call to post (nor has any Open311 client library these machines can install), so
    the report goes in as an Open311 app sends it: a form over `requests`, the photo as the `media` part."""
    import requests
    import xmltodict
    from georeport import GeoReport

    _, settings = api
    created = requests.post(f"{settings.base_url}/open311/v2/requests.{fmt}", data=FORM,
                            files={"media": ("IMG_0002.jpg", phone_photo(), "image/jpeg")}, timeout=20)
    assert created.status_code == 200, created.text
    answer = created.json()[0] if fmt == "json" else xmltodict.parse(created.content)["service_requests"]["request"]
    request_id = answer["service_request_id"]

    georeport = GeoReport(f"{settings.base_url}/open311/v2", output_format=fmt)
    services = georeport.get_service_list()
    assert "container_full" in {service["service_code"] for service in services}
    report = georeport.get_service_request(str(request_id))
    assert str(report["service_request_id"]) == str(request_id) and report["service_code"] == "container_full"
    assert report["description"] == FORM["description"] and report["status"] == "open"
    photo = requests.get(report["media_url"], timeout=20)
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    back = Image.open(io.BytesIO(photo.content))
    assert back.size == (600, 800) and dict(back.getexif()) == {}
    listed = georeport.get_service_requests(service_request_id=str(request_id))
    listed = [listed] if isinstance(listed, dict) else listed  # XML of one request parses as one dict
    assert [str(r["service_request_id"]) for r in listed] == [str(request_id)]
