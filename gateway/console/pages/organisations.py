"""The admin page of the municipality's organisation: its departments and partner entities with their
e-mail addresses and members, a form to add (or update) one, and forms to add a member with a role or
take one out. The same checks as `wastegate orgs`: a bad address or slug is a message on the page (400)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from gateway.api.bounds import storable_text
from gateway.console.auth import ConsoleUser
from gateway.console.i18n import translations
from gateway.console.session import check_csrf, context_of, page_for
from gateway.console.templating import render
from gateway.organisation.directory import OrganisationSpec
from gateway.store.organisations import (
    NewOrganisation,
    list_members,
    remove_member,
    save_organisation,
    set_member,
)
from gateway.store.queries import query

router = APIRouter()
AdminPage = Annotated[ConsoleUser, Depends(page_for("admin", city=True))]
Role = Literal["viewer", "operator", "admin"]


async def _page(request: Request, user: ConsoleUser, error: str | None = None, status_code: int = 200,
                values: dict[str, str] | None = None) -> Response:
    api = context_of(request)
    await api.cities.refresh(api.pool)
    city = api.city(user.scope.jurisdiction)
    members = await asyncio.to_thread(list_members, api.settings.database_url, city.id)
    async with api.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(query("users_of_jurisdiction"), {"jurisdiction": city.id})
        users = [str(row[0]) for row in await cur.fetchall()]
    return render(request, "organisations.html", status_code=status_code, organisations=city.organisations,
                  members=members, users=users, error=error, values=values or {})


@router.get("/organisations")
async def organisations_page(request: Request, user: AdminPage) -> Response:
    return await _page(request, user)


@router.post("/organisations")
async def save(
    request: Request, user: AdminPage,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    slug: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(max_length=20)] = "department",
    emails: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    check_csrf(request, csrf_token)
    values = {"slug": slug, "name": name, "kind": kind, "emails": emails}
    try:
        for field, text in values.items():
            storable_text(text, field)
    except ValueError as exc:
        return await _page(request, user, error=str(exc), status_code=400, values={})
    try:
        spec = OrganisationSpec.model_validate({
            "slug": slug.strip(), "name": name.strip() or slug.strip(), "kind": kind,
            "emails": tuple(part.strip() for part in emails.replace(";", ",").split(",") if part.strip())})
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return await _page(request, user, error=problem, status_code=400, values=values)
    api = context_of(request)
    await asyncio.to_thread(save_organisation, api.settings.database_url, NewOrganisation(
        spec.slug, spec.name, spec.kind, spec.emails, None, user.scope.jurisdiction))
    return RedirectResponse("/console/organisations", status_code=303)


@router.post("/organisations/members")
async def member(
    request: Request, user: AdminPage,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    organisation: Annotated[str, Form(max_length=64)] = "",
    member_name: Annotated[str, Form(alias="user", max_length=64)] = "",
    role: Annotated[Role, Form()] = "operator",
    remove: Annotated[bool, Form()] = False,
) -> Response:
    check_csrf(request, csrf_token)
    api = context_of(request)
    url, jurisdiction = api.settings.database_url, user.scope.jurisdiction
    done = await asyncio.to_thread(remove_member, url, organisation, member_name, jurisdiction) if remove else \
        await asyncio.to_thread(set_member, url, organisation, member_name, role, jurisdiction)
    if not done:
        _ = translations(request.state.language).gettext
        return await _page(request, user, status_code=400, error=_(
            "There is no organisation %(organisation)s with a user %(user)s.") % {
            "organisation": organisation, "user": member_name})
    return RedirectResponse("/console/organisations", status_code=303)
