"""Photos of reports, served publicly by their token (`/photos/<token>.jpg`, and `/photos/<token>/thumbnail.jpg`)
unless staff hid them; staff's and partners' photos on an incident (`POST /api/v1/incidents/{id}/photos`, with
a comment); and the moderation, `POST /api/v1/incidents/{id}/photos/hide` with a reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Staff, requires
from gateway.api.bounds import MAX_ID, Text, storable_text
from gateway.api.context import ApiContext, context
from gateway.media.photos import PhotoRefused, clean_upload
from gateway.organisation.scope import NotPermitted, require_in_scope
from gateway.store.photos import hide_photos, photo, store_photo
from gateway.store.workflow import IncidentNotFound, comment

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


@router.post("/api/v1/incidents/{incident_id}/photos", status_code=201,
             summary="Staff's or a partner's photo on an incident, with a comment (multipart: media, note, public)")
async def add_photo(incident_id: Annotated[int, Path(ge=1, le=MAX_ID)], api: Ctx, staff: Operator,
                    media: Annotated[UploadFile, File(description="JPEG, PNG, WebP or HEIC")],
                    note: Annotated[str, Form(max_length=4000)] = "",
                    public: Annotated[bool, Form()] = False) -> dict[str, Any]:
    try:
        text = storable_text(note.strip(), "note")
        cleaned = await clean_upload(await media.read(api.settings.photo_max_bytes + 1),
                                          api.settings.photo_max_bytes, api.settings.photo_max_pixels)
    except (PhotoRefused, ValueError) as exc:
        raise HTTPException(400, f"media: {exc}" if isinstance(exc, PhotoRefused) else str(exc)) from None
    url = cleaned.url(api.settings.base_url)
    try:
        async with api.pool.connection() as conn, conn.transaction():
            await require_in_scope(conn, incident_id, staff.scope, "operator", staff.role)
            await store_photo(conn, incident_id, cleaned)
            await comment(conn, incident_id, staff.actor, text, public, {"photo_url": url})
    except IncidentNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except NotPermitted as exc:
        raise HTTPException(403, str(exc)) from None
    return {"id": incident_id, "photo_url": url}
