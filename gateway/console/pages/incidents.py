"""The incident queue (filters, sort, counts per status), one incident (history, reporter, linked reports,
photos, the map around it, the readings that opened it) with the workflow's actions, and a report taken
for a caller. The actions are the store's workflow, with the same checks as the API: a refused
transition is a message on the page (409), never a stack trace."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from psycopg.rows import dict_row

from gateway.api.bounds import storable_text
from gateway.console.charts import Series, line_chart
from gateway.console.districts import outlines
from gateway.console.i18n import translations
from gateway.console.session import ConsoleError, OperatorPage, Page, check_csrf, context_of
from gateway.console.templating import render
from gateway.media.photos import PhotoRefused, clean_upload
from gateway.organisation.directory import normalized_email
from gateway.organisation.scope import NotPermitted, require_in_scope
from gateway.store.organisations import Organisation
from gateway.store.photos import store_photo
from gateway.store.queries import query
from gateway.store.workflow import (
    OPEN_STATUSES,
    TRANSITIONS,
    IncidentNotFound,
    NewReport,
    TransitionRefused,
    comment,
    create_report,
    mark_duplicate,
    reassign,
    transition,
)

router = APIRouter()

MAX_ID = 2**53
STATUSES = ("open", "acknowledged", "assigned", "in_progress", "resolved", "closed")
SOURCES = ("citizen", "staff", "partner", "device_rule")
SORTS = ("newest", "oldest", "severity", "activity")
# The queue's orders, substituted into its query (only these strings ever are).
ORDERS = {"newest": "id DESC", "oldest": "id ASC", "activity": "updated_at DESC, id DESC",
          "severity": "array_position(ARRAY['critical', 'major', 'minor', 'info'], severity), id DESC"}
AGES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE_SIZE = 50
# The reading field that tells the story of a device incident, by service.
EVIDENCE = {"container_full": ("fill_pct", "%"), "container_fire": ("temperature_c", " °C"),
            "sensor_fault": ("battery_pct", "%"), "vehicle_conduct": ("speed_kmh", " km/h"),
            "container_damaged": ("tilted", "")}
IncidentId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/incidents")
async def queue(
    request: Request, user: Page,
    status: Annotated[Literal["", "open_any", *STATUSES], Query()] = "open_any",  # type: ignore[valid-type]
    service_code: Annotated[str, Query(max_length=100)] = "",
    source: Annotated[Literal["", *SOURCES], Query()] = "",  # type: ignore[valid-type]
    assignee: Annotated[str, Query(max_length=200)] = "",
    age: Annotated[Literal["", "1d", "7d", "30d"], Query()] = "",
    text: Annotated[str, Query(max_length=200)] = "",
    district: Annotated[str, Query(max_length=200)] = "",
    organisation: Annotated[str, Query(max_length=64)] = "",
    overdue: Annotated[bool, Query()] = False,
    contact: Annotated[str, Query(max_length=200)] = "",
    sort: Annotated[Literal["newest", "oldest", "severity", "activity"], Query()] = "newest",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    api = context_of(request)
    city = api.city(user.scope.jurisdiction)
    districts = outlines(city.files.rules_dir)
    if district and district not in districts:
        _ = translations(request.state.language).gettext
        raise ConsoleError(400, _("There is no district %(name)s.") % {"name": district})
    visible = _organisations(request)
    organisation_id = None
    if organisation:
        found = next((org for org in visible if org.slug == organisation), None)
        if found is None:
            _ = translations(request.state.language).gettext
            raise ConsoleError(400, _("There is no organisation %(name)s.") % {"name": organisation})
        organisation_id = found.id
    statuses = list(OPEN_STATUSES) if status == "open_any" else [status] if status else None
    params = {"status": statuses, "service_code": service_code or None, "source": source or None,
              "assignee": assignee or None, "created_from": api.clock() - AGES[age] if age else None,
              "text": text or None, "district": districts[district] if district else None,
              "limit": PAGE_SIZE + 1, "offset": (page - 1) * PAGE_SIZE, "now": api.clock(),
              "organisations": user.scope.organisations, "organisation": organisation_id, "overdue": overdue,
              "jurisdiction": user.scope.jurisdiction, **_contact(request, contact)}
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("console_incidents").replace("ORDER_BY", ORDERS[sort]), params)
        rows = await cur.fetchall()
        if user.scope.is_city and api.cities.single:
            await cur.execute(query("console_incident_counts"))
        else:
            await cur.execute(query("console_incident_counts_in_scope"), {
                "organisations": user.scope.organisations, "jurisdiction": user.scope.jurisdiction})
        counts = {row["status"]: row["n"] for row in await cur.fetchall()}
    filters = {"status": status, "service_code": service_code, "source": source, "assignee": assignee, "age": age,
               "text": text, "district": district, "sort": sort, "organisation": organisation, "overdue": overdue,
               "contact": contact}
    return render(request, "incidents.html", incidents=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page=page,
                  counts=counts, statuses=STATUSES, sources=SOURCES, sorts=SORTS, filters=filters,
                  services=city.catalogue.services, districts=sorted(districts), organisations=visible)


def _contact(request: Request, contact: str) -> dict[str, str | None]:
    """One citizen's reports, by e-mail or phone: personal data, for operators only."""
    if not contact.strip():
        return {"contact_email": None, "contact_phone": ""}
    _ = translations(request.state.language).gettext
    if not request.state.user.may("operator"):
        raise ConsoleError(403, _("This needs the %(role)s role.") % {"role": "operator"})
    if "@" in contact:
        return {"contact_email": contact.strip().lower(), "contact_phone": ""}
    digits = "".join(ch for ch in contact if ch.isdigit())
    if len(digits) < 6:
        raise ConsoleError(400, _("Look a citizen up by their e-mail address or phone number."))
    return {"contact_email": "", "contact_phone": digits}


def _organisations(request: Request) -> list[Organisation]:
    """The organisations the signed-in user may see (a partner's members: their own)."""
    api = context_of(request)
    user = request.state.user
    return [org for org in api.city(user.scope.jurisdiction).organisations if user.scope.covers(org.id)]


@router.get("/incidents/new")
async def new_report_form(request: Request, user: OperatorPage) -> Response:
    services = context_of(request).city(user.scope.jurisdiction).catalogue.services
    return render(request, "report.html", services=services, error=None, values={})


@router.post("/incidents/new")
async def new_report(
    request: Request, user: OperatorPage,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    service_code: Annotated[str, Form(max_length=100)] = "",
    description: Annotated[str, Form(max_length=4000)] = "",
    address: Annotated[str, Form(max_length=500)] = "",
    lat: Annotated[str, Form(max_length=40)] = "",
    lon: Annotated[str, Form(max_length=40)] = "",
    caller_name: Annotated[str, Form(max_length=200)] = "",
    caller_phone: Annotated[str, Form(max_length=50)] = "",
    caller_email: Annotated[str, Form(max_length=200)] = "",
    photo: Annotated[UploadFile | None, File()] = None,
    channel: Annotated[Literal["phone", "counter", "letter", "email"], Form()] = "phone",
) -> Response:
    check_csrf(request, csrf_token)
    api = context_of(request)
    _ = translations(request.state.language).gettext
    values = {"service_code": service_code, "description": description, "address": address, "lat": lat, "lon": lon,
              "caller_name": caller_name, "caller_phone": caller_phone, "caller_email": caller_email,
              "channel": channel}
    city = api.city(user.scope.jurisdiction)
    service = next((s for s in city.catalogue.services if s.service_code == service_code), None)
    problem = None
    latitude = longitude = None
    if service is None:
        problem = _("Choose a service.")
    elif bool(lat.strip()) != bool(lon.strip()):
        problem = _("Give both latitude and longitude, or neither.")
    elif lat.strip():
        try:
            latitude, longitude = float(lat), float(lon)
        except ValueError:
            problem = _("Latitude and longitude are numbers, e.g. 41.3902 and 2.1540.")
        else:
            if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
                problem = _("Latitude is between -90 and 90, longitude between -180 and 180.")
    if problem is None and latitude is None and not address.strip():
        problem = _("Give an address or a position.")
    email = ""
    if problem is None and caller_email.strip():
        try:
            email = normalized_email(caller_email.strip())
        except ValueError:
            problem = _("The caller's e-mail address is not one.")
    if problem is not None or service is None:
        return render(request, "report.html", status_code=400, services=city.catalogue.services, error=problem,
                      values=values)
    cleaned = None
    if photo is not None and photo.filename:
        try:
            cleaned = await clean_upload(await photo.read(api.settings.photo_max_bytes + 1),
                                              api.settings.photo_max_bytes, api.settings.photo_max_pixels)
        except PhotoRefused as exc:
            return render(request, "report.html", status_code=400, services=city.catalogue.services,
                          error=str(exc), values=values)
    reporter = {"name": caller_name.strip(), "phone": caller_phone.strip(), "email": email, "channel": channel,
                "taken_by": user.name}
    report = NewReport("staff", service.service_code, service.service_name, description.strip(), latitude, longitude,
                       address.strip() or None,
                       cleaned.url(api.settings.base_url) if cleaned is not None else None, {},
                       {k: v for k, v in reporter.items() if v}, city.id, channel)
    async with api.pool.connection() as conn, conn.transaction():
        incident_id, _linked = await create_report(conn, report, api.clock(), api.settings.correlation_distance_m,
                                                   timedelta(seconds=api.settings.correlation_window_s),
                                                   api.cities)
        if cleaned is not None:
            await store_photo(conn, incident_id, cleaned)
    return RedirectResponse(f"/console/incidents/{incident_id}", status_code=303)


@router.get("/incidents/{incident_id}")
async def detail(request: Request, user: Page, incident_id: IncidentId) -> Response:
    return await _detail(request, incident_id)


async def _detail(request: Request, incident_id: int, error: str | None = None, status_code: int = 200,
                  notice: str | None = None) -> Response:
    api = context_of(request)
    _ = translations(request.state.language).gettext
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("incident_by_id"), {"id": incident_id})
        incident = await cur.fetchone()
        if incident is None or not request.state.user.scope.covers(incident["organisation_id"],
                                                                   incident["jurisdiction_id"]):
            raise ConsoleError(404, _("There is no incident %(id)s.") % {"id": incident_id})
        await cur.execute(query("incident_events"), {"id": incident_id, "public_only": False})
        events = await cur.fetchall()
        await cur.execute(query("console_linked_reports"),
                          {"id": incident_id, "organisations": request.state.user.scope.organisations,
                           "jurisdiction": request.state.user.scope.jurisdiction})
        linked = await cur.fetchall()
        chart = None
        if incident["device_id"] and incident["source"] == "device_rule":
            field, unit = EVIDENCE.get(incident["service_code"], ("fill_pct", "%"))
            opened = incident["first_seen_at"]
            await cur.execute(query("console_readings_around"), {
                "device_id": incident["device_id"], "start": opened - timedelta(hours=6),
                "end": opened + timedelta(hours=2)})
            readings = await cur.fetchall()
            points = [(r["time"], float(r[field])) for r in readings if r[field] is not None]
            chart = line_chart(Series(points, field, unit), marker=opened)
    viewer = request.state.user
    reporter = incident.get("reporter") if viewer.scope.may("operator", incident["organisation_id"], viewer.role) \
        else None
    actions = [name for name, (allowed, _target) in TRANSITIONS.items() if incident["status"] in allowed]
    user = request.state.user
    may_act = user.scope.may("operator", incident["organisation_id"], user.role)
    all_organisations = api.city(user.scope.jurisdiction).organisations
    organisation = next((org for org in all_organisations if org.id == incident["organisation_id"]), None)
    overdue = (incident["resolve_by"] is not None and incident["status"] not in ("resolved", "closed")
               and incident["resolve_by"] < api.clock())
    return render(request, "incident.html", status_code=status_code, incident=incident, events=events,
                  linked=linked, chart=chart, reporter=reporter, actions=actions if may_act else [], error=error,
                  notice=notice, tiles_url=api.settings.map_tiles_url, may_act=may_act, organisation=organisation,
                  overdue=overdue, organisations=all_organisations)


async def _act(request: Request, incident_id: int, work: Any, *others: int) -> Response:
    api = context_of(request)
    _ = translations(request.state.language).gettext
    user = request.state.user
    try:
        async with api.pool.connection() as conn, conn.transaction():
            for checked in (incident_id, *others):
                await require_in_scope(conn, checked, user.scope, "operator", user.role)
            await work(conn)
    except IncidentNotFound:
        raise ConsoleError(404, _("There is no incident %(id)s.") % {"id": incident_id}) from None
    except NotPermitted:
        raise ConsoleError(403, _("This needs the %(role)s role.") % {"role": "operator"}) from None
    except TransitionRefused as exc:
        return await _detail(request, incident_id, error=str(exc), status_code=409)
    return RedirectResponse(f"/console/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/action")
async def act(
    request: Request, user: OperatorPage, incident_id: IncidentId,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[Literal["acknowledge", "assign", "start", "resolve", "close", "reopen"], Form()] = "acknowledge",
    note: Annotated[str, Form(max_length=4000)] = "",
    assignee: Annotated[str, Form(max_length=200)] = "",
    public: Annotated[bool, Form()] = False,
) -> Response:
    check_csrf(request, csrf_token)
    if action == "assign" and not assignee.strip():
        _ = translations(request.state.language).gettext
        return await _detail(request, incident_id, error=_("Say whom to assign it to."), status_code=400)

    async def work(conn: Any) -> None:
        await transition(conn, incident_id, action, user.actor, note.strip(), assignee.strip() or None, public)

    return await _act(request, incident_id, work)


@router.post("/incidents/{incident_id}/comment")
async def add_comment(
    request: Request, user: OperatorPage, incident_id: IncidentId,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
    public: Annotated[bool, Form()] = False,
    photo: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """A comment, public or internal, with a photo if one is attached (checked and cleaned as citizens' are)."""
    check_csrf(request, csrf_token)
    if not note.strip():
        _ = translations(request.state.language).gettext
        return await _detail(request, incident_id, error=_("A comment needs some text."), status_code=400)
    api = context_of(request)
    cleaned = None
    if photo is not None and photo.filename:
        try:
            cleaned = await clean_upload(await photo.read(api.settings.photo_max_bytes + 1),
                                              api.settings.photo_max_bytes, api.settings.photo_max_pixels)
        except PhotoRefused as exc:
            return await _detail(request, incident_id, error=str(exc), status_code=400)

    async def work(conn: Any) -> None:
        data = None
        if cleaned is not None:
            await store_photo(conn, incident_id, cleaned)
            data = {"photo_url": cleaned.url(api.settings.base_url)}
        await comment(conn, incident_id, user.actor, note.strip(), public, data)

    return await _act(request, incident_id, work)


@router.post("/incidents/{incident_id}/duplicate")
async def duplicate(
    request: Request, user: OperatorPage, incident_id: IncidentId,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    of: Annotated[int, Form(ge=1, le=MAX_ID)] = 0,
) -> Response:
    check_csrf(request, csrf_token)

    async def work(conn: Any) -> None:
        await mark_duplicate(conn, incident_id, of, user.actor)

    return await _act(request, incident_id, work, of)


@router.post("/incidents/{incident_id}/reassign")
async def reassign_to(
    request: Request, user: OperatorPage, incident_id: IncidentId,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    organisation: Annotated[str, Form(max_length=64)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    api = context_of(request)
    _ = translations(request.state.language).gettext
    target = next((org for org in api.city(user.scope.jurisdiction).organisations if org.slug == organisation), None)
    try:
        storable_text(reason, "reason")
    except ValueError as exc:
        return await _detail(request, incident_id, error=str(exc), status_code=400)
    if target is None:
        return await _detail(request, incident_id, error=_("Choose an organisation."), status_code=400)
    if not reason.strip():
        return await _detail(request, incident_id, error=_("Say why it goes to another organisation."),
                             status_code=400)

    async def work(conn: Any) -> None:
        await reassign(conn, incident_id, target.id, target.slug, user.actor, reason.strip())

    return await _act(request, incident_id, work)
