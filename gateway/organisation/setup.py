"""At start: the organisations of `organisations.yaml` added to the store if missing, then the router
built from the service catalogue, the zones, the calendar and the organisations the store holds. A
catalogue or rule naming an organisation that does not exist refuses the start, with file:line."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from gateway.catalogue import Catalogue, load_catalogue_or_empty
from gateway.organisation.calendar import load_calendar
from gateway.organisation.directory import load_directory
from gateway.organisation.routing import Router
from gateway.settings import Settings
from gateway.store.organisations import NewOrganisation, Organisation, organisations, seed_organisations


@dataclass
class OrganisationSetup:
    catalogue: Catalogue
    router: Router
    organisations: list[Organisation]

    @property
    def by_slug(self) -> dict[str, Organisation]:
        return {org.slug: org for org in self.organisations}

    async def refresh(self, pool: AsyncConnectionPool) -> None:
        """Organisations added since (`wastegate orgs add`) become known to routing and scopes."""
        async with pool.connection() as conn:
            self.organisations = await organisations(conn)
        self.router.organisation_ids.update({org.slug: org.id for org in self.organisations})


async def load_organisation(settings: Settings, pool: AsyncConnectionPool) -> OrganisationSetup:
    directory = load_directory(settings.organisations_file)
    if directory.organisations:
        await asyncio.to_thread(seed_organisations, settings.database_url, [
            NewOrganisation(o.slug, o.name, o.kind, o.emails, o.webhook_url) for o in directory.organisations])
    async with pool.connection() as conn:
        known = await organisations(conn)
    catalogue = load_catalogue_or_empty(settings.services_file)
    router = Router.load(settings.services_file, catalogue, {org.slug: org.id for org in known},
                         load_calendar(settings.calendar_file), settings.rules_dir / "zones")
    return OrganisationSetup(catalogue, router, known)
