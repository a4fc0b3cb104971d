"""Whatever a client sends, a bad request is a 4xx with a message, never a 500; under Open311's prefix, in
Open311's error format; and no input is dropped without a trace (a photo sent as a file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

import tests.integration.test_api as api_tests
from tests.integration.test_api import KEY, Api
from tests.support import scalar

api = api_tests.api  # the fixture: a gateway with its API on a fresh database


def _open311_error(response: httpx.Response, status: int) -> str:
    """The description of Open311's one error, in JSON or XML after the path's format."""
    assert response.status_code == status, response.text
    if response.request.url.path.endswith(".xml"):
        root = ElementTree.fromstring(response.content)
        assert root.tag == "errors" and root.findtext("error/code") == str(status)
        return root.findtext("error/description") or ""
    (error,) = response.json()
    assert error["code"] == status
    return str(error["description"])


@pytest.mark.parametrize(("path", "params"), [
    # found by schemathesis: `end - timedelta(days=30)` overflowed (OverflowError: date value out of range)
    ("/api/v1/stats", {"end": "0001-01-01T00:00:00Z"}),
    ("/api/v1/stats", {"start": "9999-12-31T23:59:59Z"}),
    ("/api/v1/devices/C-1/telemetry", {"end": "0001-01-01T00:00:00Z"}),
    ("/api/v1/incidents", {"created_from": "0001-01-01T00:00:00+14:00"}),
    ("/api/v1/incidents", {"created_to": "9999-12-31T23:59:59-12:00"}),
])
def test_times_out_of_bounds_are_refused_with_a_message(api: Api, path: str, params: dict[str, str]) -> None:
    response = api.http.get(path, headers=api.staff("viewer"), params=params)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(next(iter(params))) and "must be from 2000-01-01 up to 2100-01-01" in message


def test_a_time_without_an_offset_is_utc(api: Api) -> None:
    # comparing it with the API's aware clock was a TypeError, so a 500
    response = api.http.get("/api/v1/stats", headers=api.staff("viewer"), params={"start": "2026-01-01T00:00:00"})
    assert response.status_code == 200, response.text
    assert response.json()["start"] == "2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", f"/api/v1/incidents/{2**63}", None),
    ("POST", f"/api/v1/incidents/{2**63}/comments", {"note": "hello"}),
    ("POST", "/api/v1/incidents/1/duplicate", {"of": 2**63}),
    ("GET", "/api/v1/incidents/0", None),
])
def test_ids_beyond_a_bigint_are_refused(api: Api, method: str, path: str, body: Any) -> None:
    response = api.http.request(method, path, headers=api.staff("operator"), json=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("params", [
    {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"},  # 99999999999999999999
    {"device_id": "C\x00"},
    {"service_code": "x" * 101},
    {"service_code": [f"code{i}" for i in range(101)]},
])
def test_staff_listing_filters_are_bounded(api: Api, params: dict[str, Any]) -> None:
    response = api.http.get("/api/v1/incidents", headers=api.staff("viewer"), params=params)
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(("path", "params"), [
    # found by `./run fuzz` (seed 3892565116): a NUL reached PostgreSQL, which cannot store one
    ("/api/v1/incidents", {"limit": "1", "service_code": "\x00"}),
    ("/api/v1/devices", {"kind": "\x00"}),
    ("/api/v1/devices/C%00/telemetry", {}),
])
def test_a_nul_in_a_staff_filter_is_refused(api: Api, path: str, params: dict[str, str]) -> None:
    response = api.http.get(path, headers=api.staff("viewer"), params=params)
    assert response.status_code == 422, response.text
    assert "control characters" in response.json()["message"]


@pytest.mark.parametrize("body", [
    {"service_code": "illegal_dumping", "description": "Sofa \ud800"},  # a lone surrogate PostgreSQL cannot store
    {"service_code": "illegal_dumping", "address": "Plaça\x00Reial"},
])
def test_staff_text_postgresql_cannot_store_is_refused(api: Api, body: dict[str, Any]) -> None:
    response = api.http.post("/api/v1/incidents", headers={**api.staff("operator"), "Content-Type": "application/json"},
                             content=json.dumps(body).encode())
    assert response.status_code == 422, response.text
    assert scalar(api.settings.database_url, "SELECT count(*) FROM incidents") == 0


@pytest.mark.parametrize(("params", "message"), [
    ({"end_date": "0001-01-05T00:00:00Z"}, "end_date must be from 2000-01-01"),
    ({"start_date": "0001-01-01T00:00:00Z"}, "start_date must be from 2000-01-01"),
    ({"start_date": "9999-12-31T00:00:00-23:00"}, "start_date must be from"),
    ({"service_request_id": "99999999999999999999"}, "service_request_id"),
    ({"service_request_id": ",".join(str(i) for i in range(1, 102))}, "at most 100 ids"),
    ({"service_request_id": "١٢"}, "service_request_id"),
    ({"service_code": "container_full\x00"}, "control characters"),
    ({"service_code": "x" * 2001}, "longer than 2000"),
])
def test_open311_query_parameters_are_bounded(api: Api, params: dict[str, str], message: str) -> None:
    for fmt in ("json", "xml"):
        response = api.http.get(f"/open311/v2/requests.{fmt}", params=params)
        assert message in _open311_error(response, 400)


@pytest.mark.parametrize("request_id", ["²", "9" * 19, "1%00"])
def test_an_odd_request_id_is_a_404(api: Api, request_id: str) -> None:
    assert "no request" in _open311_error(api.http.get(f"/open311/v2/requests/{request_id}.json"), 404)


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"api_key": "clé"}, 403, "api_key"),  # compare_digest refused non-ASCII str: a TypeError, a 500
    ({"description": "Overflowing\x00"}, 400, "description may not contain control characters"),
    ({"address_string": "x" * 501}, 400, "address_string is longer than 500"),
    ({"first_name": "x" * 201}, 400, "at most 200 characters"),
    ({"attribute[colour]": "x" * 1001}, 400, "attributes"),
])
def test_open311_posts_are_bounded(api: Api, fields: dict[str, str], status: int, message: str) -> None:
    assert message in _open311_error(api.report(**fields), status)
    assert scalar(api.settings.database_url, "SELECT count(*) FROM incidents") == 0


def test_a_bearer_token_with_non_ascii_characters_is_a_401(api: Api) -> None:
    response = api.http.get("/api/v1/incidents", headers={b"Authorization": "Bearer té".encode("latin-1")})
    assert response.status_code == 401


FORM = {"api_key": KEY, "service_code": "container_full", "lat": "41.40362", "long": "2.17441",
        "description": "Overflowing, see the photo"}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_broken_photo_is_refused_not_dropped(api: Api, fmt: str) -> None:
    response = api.http.post(f"/open311/v2/requests.{fmt}", data=FORM,
                             files={"media": ("bin.jpg", b"\xff\xd8\xff\xe0 a jpeg", "image/jpeg")})
    description = _open311_error(response, 400)
    assert description.startswith("media: the image cannot be read")
    assert scalar(api.settings.database_url, "SELECT count(*) FROM incidents") == 0


def test_any_file_part_or_a_media_field_is_refused(api: Api) -> None:
    other_file = api.http.post("/open311/v2/requests.json", data=FORM, files={"photo": ("a.png", b"png", "image/png")})
    assert "photo" in _open311_error(other_file, 400)
    as_text = api.http.post("/open311/v2/requests.json", data={**FORM, "media": "a photo"})
    assert "media_url" in _open311_error(as_text, 400)
    assert scalar(api.settings.database_url, "SELECT count(*) FROM incidents") == 0
    # a multipart body without a file is as good as a form-encoded one
    multipart = api.http.post("/open311/v2/requests.json", files={k: (None, v) for k, v in FORM.items()})
    assert multipart.status_code == 200, multipart.text


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_body_too_large_is_an_open311_error_under_open311(api: Api, fmt: str) -> None:
    declared = api.http.post(f"/open311/v2/requests.{fmt}", data={"api_key": KEY, "description": "x" * 70_000})
    assert "larger than 65536 bytes" in _open311_error(declared, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(70):
            yield b"x" * 1000

    streamed = api.http.post(f"/open311/v2/requests.{fmt}", content=chunks(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "larger than" in _open311_error(streamed, 413)
    staff = api.http.post("/api/v1/incidents", headers=api.staff("operator"), content=b"x" * 70_000)
    assert staff.status_code == 413 and "larger than" in staff.json()["detail"]


def test_the_frameworks_errors_are_in_open311_format_under_open311(api: Api) -> None:
    assert _open311_error(api.http.get("/open311/v2/nothing-here.xml"), 404)
    assert _open311_error(api.http.delete("/open311/v2/requests.json"), 405)
    broken = api.http.post("/open311/v2/requests.json", content=b"--x\r\nnot a part",
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert 400 <= broken.status_code < 500
    (error,) = broken.json()
    assert error["code"] == broken.status_code
    # the staff API keeps FastAPI's format
    assert api.http.get("/api/v1/nothing-here").json() == {"detail": "Not Found"}
