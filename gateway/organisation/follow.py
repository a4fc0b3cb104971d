"""The reporter's private follow link: `/follow/<id>/<token>`, the token an HMAC of the incident's id with
the database's own key (`instance_secrets`), so every replica makes and checks the same link and nothing
per report needs storing."""

from __future__ import annotations

import base64
import hashlib
import hmac

from psycopg import AsyncConnection

from gateway.store.queries import query


async def follow_key(conn: AsyncConnection) -> bytes:
    async with conn.cursor() as cur:
        await cur.execute(query("instance_secret"), {"name": "follow_link"})
        row = await cur.fetchone()
    if row is None:
        raise LookupError("the database has no follow-link key: run `wastegate migrate`")
    return str(row[0]).encode()


def follow_token(key: bytes, incident_id: int) -> str:
    digest = hmac.new(key, f"follow:{incident_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def follow_path(key: bytes, incident_id: int) -> str:
    return f"/follow/{incident_id}/{follow_token(key, incident_id)}"


def valid_token(key: bytes, incident_id: int, token: str) -> bool:
    return hmac.compare_digest(follow_token(key, incident_id).encode(), token.encode("utf-8", "surrogatepass"))
