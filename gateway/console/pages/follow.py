"""The reporter's private follow page, `/follow/<id>/<token>` (the link in their receipt): the report's
public status and public notes, nothing else (no reporter's details, no internal note, no internal title).
A wrong token is a 404, as for a report that does not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from psycopg.rows import dict_row

from gateway.console.i18n import negotiate, translations
from gateway.console.session import ConsoleError, context_of
from gateway.console.templating import render
from gateway.organisation.follow import follow_key, valid_token
from gateway.store.queries import query

router = APIRouter()


@router.get("/follow/{incident_id}/{token}")
async def follow(request: Request, incident_id: Annotated[int, Path(ge=1, le=2**53)],
                 token: Annotated[str, Path(max_length=64)]) -> Response:
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
        await cur.execute(query("followed_report_notes"), {"id": incident_id})
        notes = await cur.fetchall()
    city = api.cities.get(report["jurisdiction_id"])
    service = next((s.service_name for s in (city.catalogue.services if city else ())
                    if s.service_code == report["service_code"]), report["service_code"])
    return render(request, "follow.html", report=report, service_name=service, notes=notes)
