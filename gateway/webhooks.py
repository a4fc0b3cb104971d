"""Webhooks: every change in `incident_events` POSTed as JSON to each subscriber, in order.

The events table is the outbox: a delivery task reads past each subscriber's cursor (`webhook_cursor`,
kept across restarts) and advances it only after a 2xx answer, retrying with backoff otherwise. It runs
beside ingestion on its own connections, so a slow or dead subscriber never holds up telemetry. Bodies are
signed: `X-Wastegate-Signature: sha256=<hex HMAC-SHA256 of the body with WASTEGATE_WEBHOOK_SECRET>`.
Reporters' personal data is not sent. A partner organisation's webhook (`organisations.webhook_url`)
gets the changes of the incidents routed to it, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from datetime import datetime
from typing import Any

import httpx
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway import metrics
from gateway.store.queries import query

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Wastegate-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(row: dict[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    change_keys = ("event_id", "at", "kind", "actor", "from_status", "to_status", "note", "public")
    change = {key: plain(row[key]) for key in change_keys}
    incident = {key: plain(value) for key, value in row.items() if key not in (*change_keys, "in_scope")}
    return {"event": "incident.created" if row["kind"] == "created" else "incident.updated",
            "change": change, "incident": incident}


class WebhookDelivery:
    def __init__(self, pool: AsyncConnectionPool, url: str, secret: str, poll_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 10.0, organisation_id: int | None = None) -> None:
        self.pool = pool
        self.organisation_id = organisation_id
        self.url = url
        # Each subscription has its own cursor, even when two share a URL (an integrator serving partners).
        self.cursor_key = url if organisation_id is None else f"{url}#organisation={organisation_id}"
        self.secret = secret
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self.poll_s
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while not stop.is_set():
                try:
                    delivered = await self.deliver_pending(client)
                    backoff = self.poll_s
                    if delivered:
                        continue
                except (httpx.HTTPError, DeliveryRefused) as exc:
                    metrics.WEBHOOK_FAILURES.inc()
                    log.warning("webhook delivery failed, retrying", extra={"url": self.url, "error": str(exc),
                                                                           "retry_in_s": backoff})
                    backoff = min(backoff * 2, self.max_backoff_s)
                except Exception:
                    log.exception("webhook delivery crashed, retrying")
                    backoff = min(backoff * 2, self.max_backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)

    async def deliver_pending(self, client: httpx.AsyncClient, limit: int = 100) -> int:
        """Delivers what is past the cursor, in order; returns how many were delivered."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query("start_webhook_cursor"), {"url": self.cursor_key})
            await cur.execute(query("webhook_cursor"), {"url": self.cursor_key})
            cursor = await cur.fetchone()
            after = int(cursor["last_event_id"]) if cursor else 0
            await cur.execute(query("webhook_events"),
                              {"after": after, "limit": limit, "organisation_id": self.organisation_id})
            rows = await cur.fetchall()
        delivered = 0
        for row in rows:
            if not row["in_scope"]:  # another organisation's incident: passed over, never sent
                async with self.pool.connection() as conn:
                    await conn.execute(query("advance_webhook_cursor"),
                                       {"url": self.cursor_key, "event_id": row["event_id"]})
                continue
            body = json.dumps(payload(row), separators=(",", ":")).encode()
            response = await client.post(self.url, content=body, headers={
                "Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret),
                "X-Wastegate-Event-Id": str(row["event_id"])})
            if not response.is_success:
                raise DeliveryRefused(f"{self.url} answered {response.status_code}")
            async with self.pool.connection() as conn:
                await conn.execute(query("advance_webhook_cursor"),
                                   {"url": self.cursor_key, "event_id": row["event_id"]})
            metrics.WEBHOOKS_DELIVERED.inc()
            delivered += 1
        return delivered


class DeliveryRefused(Exception):
    pass
