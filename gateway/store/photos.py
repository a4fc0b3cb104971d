"""Photos of reports (table `photos`): stored cleaned (gateway/media/photos.py does that), served by token,
hidden by staff with a reason."""

from __future__ import annotations

from psycopg import AsyncConnection

from gateway.media.photos import Photo
from gateway.store.queries import query
from gateway.store.workflow import add_event, lock_incident


async def store_photo(conn: AsyncConnection, incident_id: int, photo: Photo) -> None:
    await conn.execute(query("insert_photo"), {
        "incident_id": incident_id, "token": photo.token, "content_type": photo.content_type, "width": photo.width,
        "height": photo.height, "image": photo.image, "thumbnail": photo.thumbnail})


async def photo(conn: AsyncConnection, token: str, thumbnail: bool = False) -> tuple[str, bytes] | None:
    """(content type, bytes) of a photo that is not hidden."""
    async with conn.cursor() as cur:
        await cur.execute(query("photo_by_token"), {"token": token})
        row = await cur.fetchone()
    if row is None:
        return None
    return str(row[0]), bytes(row[2] if thumbnail else row[1])


async def hide_photos(conn: AsyncConnection, incident_id: int, reason: str, actor: str) -> int:
    """Moderation: the incident's photos are no longer served, nor its media_url shown; the reason is in
    its (internal) history. Returns how many were hidden."""
    await lock_incident(conn, incident_id)
    async with conn.cursor() as cur:
        await cur.execute(query("hide_photos"), {"incident_id": incident_id, "reason": reason})
        hidden = len(await cur.fetchall())
    await conn.execute(query("clear_media_url"), {"id": incident_id})
    await add_event(conn, incident_id, "edit", actor, note=f"photo hidden: {reason}",
                    data={"photos_hidden": hidden, "reason": reason}, public=False)
    return hidden
