"""Open311 GeoReport v2 for citizens' apps, in JSON and XML (`.json` / `.xml` on every path).

Only the incidents of services the catalogue marks `public: true` are listed or answer by id; the
others (those about households and vehicles) are kept for staff. Device-detected incidents are listed as
the city's own reports under a public title (staff may set one; otherwise the service's name): their
internal titles and descriptions are rendered from device and household attributes (addresses, RFID tags,
plates) and are never shown here, nor are the notes rules write. Reporters' personal data (name, e-mail,
phone, device and account ids) is stored for staff and never appears in these responses. Errors are the
specification's `[{"code", "description"}]` with HTTP 400, 403, 404 or 413.
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from psycopg.rows import dict_row

from gateway import __version__
from gateway.api.bounds import MAX_ID, bounded_time, storable_text
from gateway.api.context import ApiContext, context
from gateway.catalogue import ServiceDefinition
from gateway.ledger.answers import SERVICE_CODE as MISSED_COLLECTION
from gateway.ledger.answers import answer_report
from gateway.media.photos import PhotoRefused, clean_upload
from gateway.organisation.directory import normalized_email
from gateway.organisation.setup import City
from gateway.store.photos import store_photo
from gateway.store.queries import query
from gateway.store.workflow import OPEN_STATUSES, NewReport, create_report, reporter_comment

log = logging.getLogger(__name__)
router = APIRouter(prefix="/open311/v2", tags=["open311"])

MAX_DESCRIPTION = 4000
MAX_ADDRESS = 500
MAX_UPDATE = 2000  # a reporter's update on their request
MAX_FIELD = 200  # a reporter's field; and what an error message echoes of a value
MAX_ATTRIBUTE = 1000
MAX_ATTRIBUTES = 100
MAX_IDS = 100  # service_request_id=1,2,…
MAX_FILTER = 2000  # the length of a filter parameter (service_code=a,b,…)
MAX_WINDOW = timedelta(days=90)
_ATTRIBUTE = re.compile(r"^attribute\[([A-Za-z0-9_.-]+)\]$")
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,80}")  # echoed in error messages only when it looks like this
_REPORTER_FIELDS = ("email", "first_name", "last_name", "phone", "device_id", "account_id")


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def render(data: Any, fmt: str, root: str, item: str | None, status: int = 200) -> Response:
    """JSON as is; XML as <root><item>…</item>…</root>, or <root>…</root> for one object (item None)."""
    if fmt == "json":
        return JSONResponse(data, status_code=status)
    element = ElementTree.Element(root)
    if item is None:
        for key, value in data.items():
            _append_value(element, key, value)
    else:
        for entry in data:
            _append(element, item, entry)
    body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(element, encoding="utf-8")
    return Response(body, status_code=status, media_type="text/xml; charset=utf-8")


def _append(parent: ElementTree.Element, tag: str, value: Any) -> None:
    child = ElementTree.SubElement(parent, tag)
    if isinstance(value, dict):
        for key, inner in value.items():
            _append_value(child, key, inner)
    elif value is not None:
        child.text = str(value).lower() if isinstance(value, bool) else str(value)


def _append_value(parent: ElementTree.Element, key: str, value: Any) -> None:
    """A list becomes <attributes><attribute/>…</attributes>, as the specification writes them."""
    if isinstance(value, list):
        holder = ElementTree.SubElement(parent, key)
        for entry in value:
            _append(holder, key[:-1] if key.endswith("s") else "item", entry)
    else:
        _append(parent, key, value)


def error_response(exc: Open311Error, fmt: str) -> Response:
    return render([{"code": exc.status, "description": exc.description}], fmt, "errors", "error", exc.status)


def _fmt(fmt: str) -> str:
    if fmt not in ("json", "xml"):
        raise Open311Error(404, f"unknown format {fmt!r}: use .json or .xml")
    return fmt


def _service(service: ServiceDefinition) -> dict[str, Any]:
    return {
        "service_code": service.service_code, "service_name": service.service_name,
        "description": service.description, "metadata": bool(service.attributes), "type": "realtime",
        "keywords": ",".join(service.keywords), "group": service.group,
    }


def _city(api: ApiContext, given: str | None) -> City:
    """The municipality asked for (GeoReport v2's `jurisdiction_id`): required when the instance serves
    several, ignored when it serves one."""
    if api.cities.single:
        return api.city("")
    if not given:
        raise Open311Error(400, f"jurisdiction_id is required: one of {', '.join(sorted(api.cities.by_id))}")
    city = api.cities.get(given)
    if city is None:
        raise Open311Error(404, f"no jurisdiction {given[:MAX_FIELD]!r}")
    return city


@router.get("/discovery.{fmt}", summary="Where this jurisdiction's endpoint is, and what it speaks")
async def discovery(fmt: str, request: Request, api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    fmt = _fmt(fmt)
    city = _city(api, request.query_params.get("jurisdiction_id"))
    document = {
        "changeset": __version__, "contact": city.files.contact, "key_service": city.files.key_service,
        "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2", "url": f"{api.settings.base_url}"
                       f"{router.prefix}", "changeset": __version__, "type": "production",
                       "formats": ["application/json", "text/xml"]}],
    }
    return render(document, fmt, "discovery", None)


@router.get("/services.{fmt}", summary="The service catalogue")
async def services(fmt: str, request: Request, api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    city = _city(api, request.query_params.get("jurisdiction_id"))
    return render([_service(s) for s in city.catalogue.services], _fmt(fmt), "services", "service")


@router.get("/services/{service_code}.{fmt}", summary="A service definition (its extra attributes)")
async def service_definition(service_code: str, fmt: str, request: Request,
                             api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    fmt = _fmt(fmt)
    city = _city(api, request.query_params.get("jurisdiction_id"))
    service = next((s for s in city.catalogue.services if s.service_code == service_code), None)
    if service is None:
        raise Open311Error(404, f"no service {service_code[:MAX_FIELD]!r}")
    definition = {"service_code": service.service_code, "attributes": list(service.attributes)}
    return render(definition, fmt, "service_definition", None)


_REQUEST_FORM = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["api_key", "service_code"],
        "properties": {
            "api_key": {"type": "string"}, "service_code": {"type": "string"},
            "lat": {"type": "number"}, "long": {"type": "number"}, "address_string": {"type": "string"},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION}, "media_url": {"type": "string"},
            **{field: {"type": "string"} for field in _REPORTER_FIELDS},
        },
    }}}},
}


@router.post("/requests.{fmt}", summary="Report a problem (form-encoded, api_key required)",
             openapi_extra=_REQUEST_FORM)
async def post_request(fmt: str, request: Request, api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    fmt = _fmt(fmt)
    fields, upload = await _posted(request, api)
    city = _city(api, fields.get("jurisdiction_id"))
    code = fields.get("service_code", "")
    service = next((s for s in city.catalogue.services if s.service_code == code), None)
    if service is None:
        raise Open311Error(400 if not code else 404, f"unknown service_code {code[:MAX_FIELD]!r}" if code else
                           "service_code is required")
    lat, lon = _coordinate(fields.get("lat"), -90, 90, "lat"), _coordinate(fields.get("long"), -180, 180, "long")
    address = fields.get("address_string", "").strip() or None
    if (lat is None) != (lon is None):
        raise Open311Error(400, "lat and long go together")
    if lat is None and address is None:
        raise Open311Error(400, "a location is required: lat and long, or address_string")
    if address is not None and len(address) > MAX_ADDRESS:
        raise Open311Error(400, f"address_string is longer than {MAX_ADDRESS} characters")
    description = fields.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise Open311Error(400, f"description is longer than {MAX_DESCRIPTION} characters")
    media_url = fields.get("media_url") or None
    if media_url and (len(media_url) > 2048 or not re.match(r"^https?://[^\s]+$", media_url)):
        raise Open311Error(400, "media_url must be an http(s) URL")
    cleaned = None
    if upload is not None:
        try:
            cleaned = await clean_upload(upload, api.settings.photo_max_bytes,
                                              api.settings.photo_max_pixels)  # decoding is off the event loop
        except PhotoRefused as exc:
            raise Open311Error(400, f"media: {exc}") from None
        media_url = cleaned.url(api.settings.base_url)
    attributes = {m.group(1): value for k, value in fields.items() if (m := _ATTRIBUTE.match(k))}
    if len(attributes) > MAX_ATTRIBUTES or any(len(v) > MAX_ATTRIBUTE for v in attributes.values()):
        raise Open311Error(400, f"at most {MAX_ATTRIBUTES} attributes of at most {MAX_ATTRIBUTE} characters each")
    reporter = {f: fields[f] for f in _REPORTER_FIELDS if fields.get(f)}
    if any(len(v) > MAX_FIELD for v in reporter.values()):
        raise Open311Error(400, f"{', '.join(_REPORTER_FIELDS)} may have at most {MAX_FIELD} characters each")
    if "email" in reporter:  # the address receipts and notices go to: refused now rather than bounced later
        try:
            reporter["email"] = normalized_email(reporter["email"])
        except ValueError:
            raise Open311Error(400, "email is not an e-mail address") from None
    channel = fields.get("channel") or "web"  # not GeoReport's: an app may say it is one
    if channel not in ("web", "app"):
        raise Open311Error(400, "channel is web or app")
    report = NewReport("citizen", code, service.service_name, description, lat, lon, address, media_url,
                       attributes, reporter or None, city.id, channel)
    async with api.pool.connection() as conn, conn.transaction():
        incident_id, _ = await create_report(
            conn, report, api.clock(), api.settings.correlation_distance_m,
            timedelta(seconds=api.settings.correlation_window_s), api.cities)
        if cleaned is not None:
            await store_photo(conn, incident_id, cleaned)
        if code == MISSED_COLLECTION and (book := api.ledger_books().get(city.id)) is not None:
            # Answered before the POST returns: what the trucks saw of that doorstep today. In a savepoint:
            # an answer that fails leaves the report stored, to be worked by staff.
            try:
                async with conn.transaction():
                    await answer_report(conn, book, incident_id, address, lat, lon, api.clock(),
                                        api.settings.correlation_distance_m)
            except Exception as exc:  # whatever fails, the citizen's report is kept
                log.error("a missed-collection report was not answered from the ledger",
                          extra={"incident": incident_id, "error": f"{type(exc).__name__}: {exc}"})
    # The reporter learns that a request in an internal service will not be listed, not even to them.
    notice = "" if service.public else "this request is followed up by staff and is not published"
    return render([{"service_request_id": str(incident_id), "service_notice": notice, "account_id": None}], fmt,
                  "service_requests", "request")


async def _posted(request: Request, api: ApiContext) -> tuple[dict[str, str], bytes | None]:
    """A POST's fields and its photo (the file part `media`, as FixMyStreet and other GeoReport servers take
    it), once its api_key is known. Any other file, or `media` as text, is refused rather than dropped
    unseen; a field PostgreSQL could not store is refused with its name."""
    async with request.form() as form:  # closes the temporary files of a multipart body
        parts = list(form.multi_items())
        fields = {key: value for key, value in parts if isinstance(value, str)}
        if not _known_key(fields.get("api_key", ""), api.settings.open311_api_keys):
            raise Open311Error(403, "a valid api_key is required")
        files = [(name, value) for name, value in parts if not isinstance(value, str)]
        others = sorted({name for name, _ in files if name != "media"} | ({"media"} & fields.keys()))
        if others or len(files) > 1:
            raise Open311Error(400, f"one photo, as the file part `media`, is accepted (not {', '.join(others)}); "
                                    "or send its address as media_url")
        upload = await files[0][1].read(api.settings.photo_max_bytes + 1) if files else None
    for name, value in fields.items():
        try:
            storable_text(value, name if _FIELD_NAME.fullmatch(name) else "a field")
        except ValueError as exc:
            raise Open311Error(400, str(exc)) from None
    return fields, upload


def _known_key(key: str, keys: list[str]) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
    given = key.encode("utf-8", "surrogatepass")
    return any(hmac.compare_digest(given, k.encode("utf-8")) for k in keys)


def _coordinate(raw: str | None, low: float, high: float, name: str) -> float | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise Open311Error(400, f"{name} must be a number") from None
    if not low <= value <= high or value != value:
        raise Open311Error(400, f"{name} must be between {low} and {high}")
    return value


def _parse_time(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C date-time, e.g. 2026-11-23T08:00:00Z") from None
    try:
        return bounded_time(parsed, name)
    except ValueError as exc:
        raise Open311Error(400, str(exc)) from None


def _window(start_raw: str | None, end_raw: str | None, now: datetime) -> tuple[datetime | None, datetime | None]:
    start, end = _parse_time(start_raw, "start_date"), _parse_time(end_raw, "end_date")
    if start is None and end is None:
        return now - MAX_WINDOW, None
    if start is not None and end is not None:
        if end < start:
            raise Open311Error(400, "end_date is before start_date")
        if end - start > MAX_WINDOW:
            raise Open311Error(400, "start_date and end_date may be at most 90 days apart")
    elif start is None and end is not None:
        start = end - MAX_WINDOW
    return start, end


def _request(row: dict[str, Any], service: ServiceDefinition) -> dict[str, Any]:
    public_title = row["public_title"] or service.service_name
    # A device incident's own title and description are rendered from device and household attributes.
    device_made = row["source"] == "device_rule"
    return {
        "service_request_id": str(row["id"]),
        "status": "open" if row["status"] in OPEN_STATUSES else "closed",
        "status_notes": row["status_notes"],
        "service_name": service.service_name,
        "service_code": row["service_code"],
        "description": public_title if device_made else row["description"] or public_title,
        "agency_responsible": row["agency"] or service.responsible,
        "service_notice": "reported by the city's sensors" if device_made else None,
        "requested_datetime": row["created_at"].isoformat(),
        "updated_datetime": row["updated_at"].isoformat(),
        # when it should be resolved: its deadline on the working-hours calendar
        "expected_datetime": row["resolve_by"].isoformat() if row["resolve_by"] else None,
        "address": row["address"],
        "address_id": None,
        "zipcode": None,
        "lat": row["lat"],
        "long": row["lon"],
        "media_url": row["media_url"],
    }


def _public_services(city: City) -> dict[str, ServiceDefinition]:
    return {s.service_code: s for s in city.catalogue.services if s.public}


async def _requests(api: ApiContext, city: City, **filters: Any) -> list[dict[str, Any]]:
    services = _public_services(city)
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("open311_requests"), {**filters, "public_codes": list(services),
                                                      "jurisdiction": city.id})
        return [_request(row, services[row["service_code"]]) for row in await cur.fetchall()]


@router.get("/requests.{fmt}", summary="Requests, newest first (at most 90 days at a time)")
async def get_requests(fmt: str, request: Request, api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    fmt = _fmt(fmt)
    params = request.query_params
    for name, value in params.multi_items():
        if len(value) > MAX_FILTER:
            raise Open311Error(400, f"{name} is longer than {MAX_FILTER} characters")
    ids = None
    if params.get("service_request_id"):
        ids = _ids(params["service_request_id"])
    status = params.get("status")
    if status not in (None, "", "open", "closed"):
        raise Open311Error(400, "status must be open or closed")
    statuses = list(OPEN_STATUSES) if status == "open" else ["resolved", "closed"] if status == "closed" else None
    start, end = (None, None) if ids else _window(params.get("start_date"), params.get("end_date"), api.clock())
    codes = [c for c in params.get("service_code", "").split(",") if c] or None
    try:
        storable_text(params.get("service_code", ""), "service_code")
    except ValueError as exc:
        raise Open311Error(400, str(exc)) from None
    city = _city(api, params.get("jurisdiction_id"))
    rows = await _requests(api, city, ids=ids, service_code=codes, statuses=statuses, start=start, end=end,
                           limit=1000)
    return render(rows, fmt, "service_requests", "request")


def _ids(raw: str) -> list[int]:
    message = f"service_request_id must be a comma-separated list of at most {MAX_IDS} ids"
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if len(parts) > MAX_IDS or not all(part.isascii() and part.isdigit() for part in parts):
        raise Open311Error(400, message)
    ids = [int(part) for part in parts]
    if any(i > MAX_ID for i in ids):
        raise Open311Error(400, message)
    return ids


@router.get("/requests/{request_id}.{fmt}", summary="One request")
async def get_request(request_id: str, fmt: str, request: Request,
                      api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    fmt = _fmt(fmt)
    city = _city(api, request.query_params.get("jurisdiction_id"))
    # isdigit alone lets through digits int() refuses, such as "²"
    if not (request_id.isascii() and request_id.isdigit()) or len(request_id) > 18:
        raise Open311Error(404, f"no request {request_id[:40]!r}")
    rows = await _requests(api, city, ids=[int(request_id)], service_code=None, statuses=None, start=None, end=None,
                           limit=1)
    if not rows:  # also when the request is in an internal service: its existence is not told either
        raise Open311Error(404, f"no request {request_id!r}")
    return render(rows, fmt, "service_requests", "request")


@router.get("/servicerequestupdates.{fmt}", summary="Public updates of requests (FixMyStreet style)")
async def request_updates(fmt: str, request: Request, api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    fmt = _fmt(fmt)
    start, end = _window(request.query_params.get("start_date"), request.query_params.get("end_date"), api.clock())
    city = _city(api, request.query_params.get("jurisdiction_id"))
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("request_updates"), {"start": start, "end": end, "limit": 1000,
                                                      "public_codes": list(_public_services(city)),
                                                      "jurisdiction": city.id})
        rows = await cur.fetchall()
    updates = [{
        "update_id": str(row["id"]),
        "service_request_id": str(row["incident_id"]),
        "status": ("open" if (row["to_status"] or "open") in OPEN_STATUSES else "closed").upper(),
        "updated_datetime": row["at"].isoformat(),
        "description": row["note"],
        "media_url": row["media_url"],
    } for row in rows]
    return render(updates, fmt, "service_request_updates", "request_update")


@router.post("/servicerequestupdates.{fmt}", summary="The reporter's update on their request (FixMyStreet style)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
                 "schema": {"type": "object", "required": ["api_key", "service_request_id", "description", "email"],
                            "properties": {"api_key": {"type": "string"}, "service_request_id": {"type": "string"},
                                           "description": {"type": "string", "maxLength": MAX_UPDATE},
                                           "email": {"type": "string"}}}}}}})
async def post_update(fmt: str, request: Request, api: ApiContext = Depends(context)) -> Response:  # noqa: B008
    """Only the reporter updates their request: the `email` must be the one they reported with. The update
    goes into the request's history for staff (and their organisation is told), never into public lists."""
    fmt = _fmt(fmt)
    fields, upload = await _posted(request, api)
    city = _city(api, fields.get("jurisdiction_id"))
    raw_id = fields.get("service_request_id", "")
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18 or int(raw_id) > MAX_ID:
        raise Open311Error(400, "service_request_id is required: the id of your request")
    description = fields.get("description", "").strip()
    if not description or len(description) > MAX_UPDATE:
        raise Open311Error(400, f"description is required, at most {MAX_UPDATE} characters")
    try:
        email = normalized_email(fields.get("email", "")).lower()
    except ValueError:
        raise Open311Error(400, "email is required: the address you reported with") from None
    incident_id = int(raw_id)
    cleaned = None
    if upload is not None:
        try:
            cleaned = await clean_upload(upload, api.settings.photo_max_bytes,
                                              api.settings.photo_max_pixels)
        except PhotoRefused as exc:
            raise Open311Error(400, f"media: {exc}") from None
    async with api.pool.connection() as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("reporter_of"), {"id": incident_id})
            found = await cur.fetchone()
        if found is None or found["source"] != "citizen" or found["jurisdiction_id"] != city.id \
                or (found["service_code"] not in _public_services(city) and found["email"] != email):
            raise Open311Error(404, f"no request {raw_id}")
        if found["email"] != email:
            raise Open311Error(403, "only the reporter updates a request: give the e-mail you reported with")
        data: dict[str, Any] = {"channel": "open311"}
        if cleaned is not None:
            await store_photo(conn, incident_id, cleaned)
            data["photo_url"] = cleaned.url(api.settings.base_url)
        update_id = await reporter_comment(conn, incident_id, description, data)
    return render([{"update_id": str(update_id)}], fmt, "service_request_updates", "request_update")
