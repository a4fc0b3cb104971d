"""Organisations and their members (tables `organisations`, `organisation_members`), and the routing of
an incident to one of them (`incidents.organisation_id`, its priority and deadlines). What to route where
is decided above the store (gateway/organisation/routing.py); the store records it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import psycopg
from psycopg import AsyncConnection

from gateway.store.queries import query


@dataclass(frozen=True, slots=True)
class Organisation:
    id: int
    slug: str
    name: str
    kind: str  # department | partner
    emails: tuple[str, ...]
    webhook_url: str | None
    jurisdiction: str = ""


@dataclass(frozen=True, slots=True)
class NewOrganisation:
    slug: str
    name: str
    kind: str
    emails: tuple[str, ...] = ()
    webhook_url: str | None = None
    jurisdiction: str = ""


@dataclass(frozen=True, slots=True)
class Membership:
    organisation_id: int
    slug: str
    kind: str
    role: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a new incident goes and by when it must be answered and resolved."""

    organisation_id: int | None
    organisation: str | None  # its slug, for the history
    priority: str
    respond_by: datetime | None
    resolve_by: datetime | None


class Assigner(Protocol):
    def __call__(self, service_code: str, lat: float | None, lon: float | None, registered_at: datetime,
                 overrides: Mapping[str, object] | None = None, jurisdiction: str = "") -> Assignment: ...


def _organisation(row: tuple[object, ...]) -> Organisation:
    id_, slug, name, kind, emails, webhook_url, jurisdiction = row
    return Organisation(int(id_), str(slug), str(name), str(kind), tuple(emails or ()),  # type: ignore[call-overload, arg-type]
                        str(webhook_url) if webhook_url else None, str(jurisdiction))


def seed_organisations(conninfo: str, organisations: Iterable[NewOrganisation]) -> list[str]:
    """Adds those missing; returns the slugs added."""
    added = []
    with psycopg.connect(conninfo) as conn, conn.transaction():
        for org in organisations:
            row = conn.execute(query("seed_organisation"), _params(org)).fetchone()
            if row is not None:
                added.append(org.slug)
    return added


def save_organisation(conninfo: str, org: NewOrganisation) -> bool:
    """Adds it, or updates its name, kind and addresses; True when it was added."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        row = conn.execute(query("insert_organisation"), _params(org)).fetchone()
    assert row is not None
    return bool(row[1])


def _params(org: NewOrganisation) -> dict[str, object]:
    return {"slug": org.slug, "name": org.name, "kind": org.kind, "emails": list(org.emails),
            "webhook_url": org.webhook_url, "jurisdiction": org.jurisdiction}


def list_organisations(conninfo: str) -> list[Organisation]:
    with psycopg.connect(conninfo) as conn:
        return [_organisation(row) for row in conn.execute(query("all_organisations"))]


async def organisations(conn: AsyncConnection) -> list[Organisation]:
    async with conn.cursor() as cur:
        await cur.execute(query("all_organisations"))
        return [_organisation(row) for row in await cur.fetchall()]


def set_member(conninfo: str, slug: str, user: str, role: str, jurisdiction: str = "") -> bool:
    """False when there is no such organisation, or no such user among that municipality's staff."""
    params = {"slug": slug, "user": user, "role": role, "jurisdiction": jurisdiction}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        return conn.execute(query("set_organisation_member"), params).fetchone() is not None


def remove_member(conninfo: str, slug: str, user: str, jurisdiction: str = "") -> bool:
    params = {"slug": slug, "user": user, "jurisdiction": jurisdiction}
    with psycopg.connect(conninfo) as conn, conn.transaction():
        return conn.execute(query("remove_organisation_member"), params).fetchone() is not None


def list_members(conninfo: str, jurisdiction: str | None = None) -> list[tuple[str, str, str]]:
    """(organisation, user, role), of one municipality or (None) all."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(query("organisation_members"), {"jurisdiction": jurisdiction})
        return [(str(a), str(b), str(c)) for a, b, c in rows]


async def memberships(conn: AsyncConnection, user_id: int) -> list[Membership]:
    async with conn.cursor() as cur:
        await cur.execute(query("user_memberships"), {"user_id": user_id})
        return [Membership(int(a), str(b), str(c), str(d)) for a, b, c, d in await cur.fetchall()]


async def record_assignment(conn: AsyncConnection, incident_id: int, assignment: Assignment) -> None:
    await conn.execute(query("route_incident"), {
        "id": incident_id, "organisation_id": assignment.organisation_id, "priority": assignment.priority,
        "respond_by": assignment.respond_by, "resolve_by": assignment.resolve_by})
