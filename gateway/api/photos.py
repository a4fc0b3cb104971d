"""Photos of reports, served publicly by their token (`/photos/<token>.jpg`, and `/photos/<token>/thumbnail.jpg`)
unless staff hid them; and the staff's moderation, `POST /api/v1/incidents/{id}/photos/hide` with a reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Staff, requires
from gateway.api.bounds import MAX_ID, Text
from gateway.api.context import ApiContext, context
from gateway.organisation.scope import NotPermitted, require_in_scope
from gateway.store.photos import hide_photos, photo
from gateway.store.workflow import IncidentNotFound

router = APIRouter(tags=["photos"])
Ctx = Annotated[ApiContext, Depends(context)]
Token = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,40}$")]
Operator = Annotated[Staff, Depends(requires("operator"))]


class Hide(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(min_length=1, max_length=2000)


async def _serve(api: ApiContext, token: str, thumbnail: bool) -> Response:
    async with api.pool.connection() as conn:
        found = await photo(conn, token, thumbnail)
    if found is None:
        raise HTTPException(404, "no such photo")
    content_type, data = found
    return Response(data, media_type=content_type, headers={"Cache-Control": "public, max-age=86400",
                                                              "X-Content-Type-Options": "nosniff"})


@router.get("/photos/{token}.jpg", summary="A report's photo (without its metadata)")
async def photo_file(token: Token, api: Ctx) -> Response:
    return await _serve(api, token, thumbnail=False)


@router.get("/photos/{token}/thumbnail.jpg", summary="A report's photo, small")
async def photo_thumbnail(token: Token, api: Ctx) -> Response:
    return await _serve(api, token, thumbnail=True)


@router.post("/api/v1/incidents/{incident_id}/photos/hide", summary="Moderation: hide an incident's photos")
async def hide(incident_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: Hide, api: Ctx,
               staff: Operator) -> dict[str, Any]:
    try:
        async with api.pool.connection() as conn, conn.transaction():
            await require_in_scope(conn, incident_id, staff.scope, "operator", staff.role)
            hidden = await hide_photos(conn, incident_id, body.reason, staff.actor)
    except IncidentNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except NotPermitted as exc:
        raise HTTPException(403, str(exc)) from None
    return {"id": incident_id, "photos_hidden": hidden}
