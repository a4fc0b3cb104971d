"""From incident events to messages in the outbox, past a cursor the composing transaction holds locked
(so that replicas never compose the same mail twice), and the daily digest of overdue incidents.

- `assignment` events (routing at creation, a reassignment) → `assigned`, to the organisation's addresses;
- a citizen's report `created` with an e-mail → `receipt` with the private follow link;
- a public comment of staff on such a report → `reply`, to the reporter; what the reporter writes
  (their follow page, an Open311 update) → `message`, to the organisation the report is with;
- public `status` changes of such a report → `status`, or `closed` when resolved or closed (once: a
  resolved report closed later is not announced again), with the public note; closed as a duplicate
  (`merge`) → `closed`. Nothing personal or internal goes to a reporter: the service's name, the public note, the
  status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.catalogue import Catalogue
from gateway.organisation.follow import follow_key, follow_path
from gateway.store.queries import query

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("en", "ca", "es")


@dataclass(frozen=True)
class Message:
    kind: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str
    incident_id: int | None = None
    organisation_id: int | None = None


class Templates:
    """`<language>/<kind>.txt` (its first line is the subject) and `<language>/<kind>.html`."""

    def __init__(self, language: str, zone: ZoneInfo, directory: Path = TEMPLATES) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"no mail templates in {language!r}; one of {', '.join(LANGUAGES)}")
        self.language = language
        self.zone = zone
        self.environment = Environment(loader=FileSystemLoader([directory / language, directory]),
                                       undefined=StrictUndefined,
                                       autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True,
                                       keep_trailing_newline=True)
        self.environment.filters["datetime"] = self._datetime

    def _datetime(self, value: datetime | None) -> str:
        return "–" if value is None else str(format_datetime(value, format="medium", locale=self.language,
                                                             tzinfo=self.zone))

    def render(self, kind: str, values: Mapping[str, Any]) -> tuple[str, str, str]:
        text = self.environment.get_template(f"{kind}.txt").render(**values)
        subject, _, body = text.partition("\n")
        html = self.environment.get_template(f"{kind}.html").render(**values)
        # One line whatever an address or a name holds: a header cannot carry a line break.
        return " ".join(subject.split()), body.lstrip("\n"), html


class MailComposer:
    """`cities`: per municipality (jurisdiction id), its catalogue (the services' names) and its templates
    (its language and time zone)."""

    def __init__(self, pool: AsyncConnectionPool, cities: Mapping[str, tuple[Catalogue, Templates]], base_url: str,
                 clock: Callable[[], datetime], digest_hour: int = 8, poll_s: float = 2.0) -> None:
        self.pool = pool
        self.services = {jurisdiction: {s.service_code: s.service_name for s in catalogue.services}
                         for jurisdiction, (catalogue, _) in cities.items()}
        self.templates = {jurisdiction: templates for jurisdiction, (_, templates) in cities.items()}
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.digest_hour = digest_hour
        self.poll_s = poll_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                composed = await self.compose_pending()
                await self.compose_digests()
                if composed:
                    continue
            except Exception:
                log.exception("composing mail failed, trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)

    async def compose_pending(self, limit: int = 200) -> int:
        """Composes what the events past the cursor call for; returns how many events were read."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(query("lock_mail_cursor"))
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("mail_cursor_for_update"))
                cursor = await cur.fetchone()
                assert cursor is not None
                await cur.execute(query("mail_events"), {"after": cursor["last_event_id"], "limit": limit})
                events = await cur.fetchall()
            if not events:
                return 0
            key = await follow_key(conn)
            for event in events:
                for message in self.messages_for(event, key):
                    await _insert(conn, message)
            await conn.execute(query("advance_mail_cursor"), {"event_id": events[-1]["event_id"]})
        return len(events)

    def messages_for(self, event: Mapping[str, Any], key: bytes) -> list[Message]:
        jurisdiction = event["jurisdiction_id"]
        if jurisdiction not in self.templates:
            return []  # a municipality no longer served
        service_name = self.services[jurisdiction].get(event["service_code"], event["service_code"])
        incident = {"id": event["id"], "service_name": service_name, "address": event["address"],
                    "lat": event["lat"], "lon": event["lon"], "priority": event["priority"] or "normal",
                    "respond_by": event["respond_by"], "resolve_by": event["resolve_by"], "title": event["title"],
                    "description": event["description"]}
        found = []
        data = event["data"] or {}
        if event["kind"] == "assignment" and data.get("organisation") and event["organisation_emails"]:
            found.append(self._message(jurisdiction, "assigned", tuple(event["organisation_emails"]), {
                    "incident": incident, "organisation": event["organisation_name"],
                    "reason": data.get("reason") or "", "link": f"{self.base_url}/console/incidents/{event['id']}"},
                    event["id"], event["organisation_id"]))
        if event["kind"] == "comment" and event["actor"] == "reporter" and event["current_organisation_emails"]:
            found.append(self._message(jurisdiction, "message", tuple(event["current_organisation_emails"]), {
                "incident": incident, "organisation": event["current_organisation_name"], "note": event["note"],
                "link": f"{self.base_url}/console/incidents/{event['id']}"},
                event["id"], event["current_organisation_id"]))
        email = event["reporter_email"]
        if email and event["source"] == "citizen":
            public = {"id": event["id"], "service_name": service_name}
            link = self.base_url + follow_path(key, event["id"])
            if event["kind"] == "comment" and event["public"] and str(event["actor"]).startswith("staff:"):
                found.append(self._message(jurisdiction, "reply", (email,), {"report": public, "link": link,
                                                                             "note": event["note"]}, event["id"]))
            elif event["kind"] == "created":
                found.append(self._message(jurisdiction, "receipt", (email,), {"report": public, "link": link},
                                           event["id"]))
            elif event["kind"] in ("status", "merge") and event["public"] and event["to_status"] \
                    and not (event["from_status"] == "resolved" and event["to_status"] == "closed"):
                kind = "closed" if event["to_status"] in ("resolved", "closed") else "status"
                found.append(self._message(jurisdiction, kind, (email,), {"report": public, "link": link,
                                                            "status": event["to_status"], "note": event["note"]},
                                           event["id"]))
        return found

    def _message(self, jurisdiction: str, kind: str, recipients: tuple[str, ...], values: Mapping[str, Any],
                 incident_id: int | None, organisation_id: int | None = None) -> Message:
        subject, text, html = self.templates[jurisdiction].render(kind, values)
        return Message(kind, recipients, subject, text, html, incident_id, organisation_id)

    async def compose_digests(self) -> int:
        """Once a day, at the digest hour of the calendar's zone, each organisation with overdue incidents
        gets their list; `mail_digests` makes it once per day whatever the replicas."""
        now = self.clock()
        async with self.pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(query("overdue_by_organisation"), {"now": now})
                rows = await cur.fetchall()
            by_organisation: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                by_organisation[row["organisation_id"]].append(row)
            sent = 0
            for organisation_id, incidents in by_organisation.items():
                first = incidents[0]
                jurisdiction = first["jurisdiction_id"]
                if jurisdiction not in self.templates:
                    continue
                local = now.astimezone(self.templates[jurisdiction].zone)
                if local.hour < self.digest_hour:
                    continue
                async with conn.cursor() as cur:
                    await cur.execute(query("claim_digest"), {"organisation_id": organisation_id, "day": local.date()})
                    if await cur.fetchone() is None:
                        continue
                names = self.services[jurisdiction]
                items = [{"id": i["id"], "service_name": names.get(i["service_code"], i["service_code"]),
                          "address": i["address"], "resolve_by": i["resolve_by"],
                          "late": _late(now - i["resolve_by"]),
                          "link": f"{self.base_url}/console/incidents/{i['id']}"} for i in incidents]
                await _insert(conn, self._message(jurisdiction, "digest", tuple(first["organisation_emails"]), {
                    "organisation": first["organisation_name"], "incidents": items, "day": local.date().isoformat(),
                    "link": f"{self.base_url}/console/incidents?overdue=true"}, None, organisation_id))
                sent += 1
        return sent


def _late(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h"


async def _insert(conn: AsyncConnection, message: Message) -> None:
    await conn.execute(query("insert_mail"), {
        "kind": message.kind, "incident_id": message.incident_id, "organisation_id": message.organisation_id,
        "recipients": list(message.recipients), "subject": message.subject, "body_text": message.text,
        "body_html": message.html})
