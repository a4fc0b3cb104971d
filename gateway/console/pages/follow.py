"""The reporter's private follow page, `/follow/<id>/<token>` (the link in their receipt): the report's
public status and public notes, what they wrote themselves, a form to write to the city, and once the
report is resolved, a form to rate the outcome (once). Nothing else: no reporter's details, no internal
note, no internal title. A wrong token is a 404, as for a report that does not exist; the token in the
path is what authorises the forms (it is the reporter's secret), so they need no session."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from psycopg.rows import dict_row

from gateway.api.bounds import storable_text
from gateway.console.i18n import negotiate, translations
from gateway.console.session import ConsoleError, context_of
from gateway.console.templating import render
from gateway.media.photos import PhotoRefused, clean_upload
from gateway.organisation.follow import follow_key, valid_token
from gateway.store.photos import store_photo
from gateway.store.queries import query
from gateway.store.workflow import TransitionRefused, rate, reporter_comment

router = APIRouter()
IncidentId = Annotated[int, Path(ge=1, le=2**53)]
Token = Annotated[str, Path(max_length=64)]


async def _report(request: Request, incident_id: int, token: str) -> dict[str, Any]:
    request.state.language = negotiate(request.headers.get("accept-language"))
    _ = translations(request.state.language).gettext
    api = context_of(request)
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        key = await follow_key(conn)
        report = None
        if valid_token(key, incident_id, token):
            await cur.execute(query("followed_report"), {"id": incident_id})
            report = await cur.fetchone()
    if report is None:
        raise ConsoleError(404, _("There is no such report."))
    return report


async def _page(request: Request, report: dict[str, Any], error: str | None = None, status_code: int = 200,
                notice: str | None = None) -> Response:
    api = context_of(request)
    async with api.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query("followed_report_notes"), {"id": report["id"]})
        notes = await cur.fetchall()
    city = api.cities.get(report["jurisdiction_id"])
    service = next((s.service_name for s in (city.catalogue.services if city else ())
                    if s.service_code == report["service_code"]), report["service_code"])
    return render(request, "follow.html", status_code=status_code, report=report, service_name=service, notes=notes,
                  error=error, notice=notice, path=f"/follow/{report['id']}/{request.path_params['token']}")


@router.get("/follow/{incident_id}/{token}")
async def follow(request: Request, incident_id: IncidentId, token: Token) -> Response:
    return await _page(request, await _report(request, incident_id, token))


@router.post("/follow/{incident_id}/{token}/comment")
async def write(request: Request, incident_id: IncidentId, token: Token,
                note: Annotated[str, Form(max_length=2000)] = "",
                photo: Annotated[UploadFile | None, File()] = None) -> Response:
    """What the reporter writes, with a photo if they attach one (checked and cleaned as any other)."""
    report = await _report(request, incident_id, token)
    _ = translations(request.state.language).gettext
    try:
        text = storable_text(note.strip(), "note")
    except ValueError as exc:
        return await _page(request, report, error=str(exc), status_code=400)
    if not text:
        return await _page(request, report, error=_("Write something first."), status_code=400)
    api = context_of(request)
    cleaned = None
    if photo is not None and photo.filename:
        try:
            cleaned = await clean_upload(await photo.read(api.settings.photo_max_bytes + 1),
                                              api.settings.photo_max_bytes, api.settings.photo_max_pixels)
        except PhotoRefused as exc:
            return await _page(request, report, error=str(exc), status_code=400)
    async with api.pool.connection() as conn, conn.transaction():
        data = None
        if cleaned is not None:
            await store_photo(conn, incident_id, cleaned)
            data = {"photo_url": cleaned.url(api.settings.base_url)}
        await reporter_comment(conn, incident_id, text, data)
    return RedirectResponse(f"/follow/{incident_id}/{token}", status_code=303)


@router.post("/follow/{incident_id}/{token}/rating")
async def rating(request: Request, incident_id: IncidentId, token: Token,
                 score: Annotated[int | None, Form(ge=1, le=5)] = None,
                 comment: Annotated[str, Form(max_length=2000)] = "") -> Response:
    report = await _report(request, incident_id, token)
    if score is None:
        _ = translations(request.state.language).gettext
        return await _page(request, report, error=_("Choose a rating from 1 to 5."), status_code=400)
    try:
        text = storable_text(comment.strip(), "comment")
    except ValueError as exc:
        return await _page(request, report, error=str(exc), status_code=400)
    api = context_of(request)
    try:
        async with api.pool.connection() as conn, conn.transaction():
            await rate(conn, incident_id, score, text, api.clock(), api.settings.reopen_at_or_below_rating)
    except TransitionRefused as exc:
        return await _page(request, report, error=str(exc), status_code=409)
    return RedirectResponse(f"/follow/{incident_id}/{token}", status_code=303)
