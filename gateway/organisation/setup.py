"""At start, for each municipality (one, on a single-city install): the organisations of its
`organisations.yaml` added to the store if missing, then its router built from its service catalogue,
zones, calendar and the organisations the store holds. A catalogue naming an organisation that does not
exist refuses the start, with file:line."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from gateway.catalogue import Catalogue, load_catalogue_or_empty
from gateway.organisation.calendar import load_calendar
from gateway.organisation.directory import load_directory
from gateway.organisation.jurisdictions import JurisdictionFiles, jurisdiction_files
from gateway.organisation.routing import Router
from gateway.settings import Settings
from gateway.store.organisations import Assignment, NewOrganisation, Organisation, organisations, seed_organisations


@dataclass
class City:
    """One municipality: its files, catalogue, router and organisations."""

    files: JurisdictionFiles
    catalogue: Catalogue
    router: Router
    organisations: list[Organisation]

    @property
    def id(self) -> str:
        return self.files.id

    @property
    def by_slug(self) -> dict[str, Organisation]:
        return {org.slug: org for org in self.organisations}


@dataclass
class Cities:
    by_id: dict[str, City]

    @property
    def single(self) -> bool:
        return list(self.by_id) == [""]

    def get(self, jurisdiction: str) -> City | None:
        return self.by_id.get(jurisdiction)

    def __call__(self, service_code: str, lat: float | None, lon: float | None, registered_at: datetime,
                 overrides: Mapping[str, object] | None = None, jurisdiction: str = "") -> Assignment:
        """Routes in the incident's own municipality (the Assigner the store calls)."""
        city = self.by_id.get(jurisdiction)
        if city is None:
            return Assignment(None, None, "normal", None, None)
        return city.router(service_code, lat, lon, registered_at, overrides)

    async def refresh(self, pool: AsyncConnectionPool) -> None:
        """Organisations added since (`wastegate orgs add`) become known to routing and scopes."""
        async with pool.connection() as conn:
            known = await organisations(conn)
        for city in self.by_id.values():
            city.organisations = [org for org in known if org.jurisdiction == city.id]
            city.router.organisation_ids.update({org.slug: org.id for org in city.organisations})


async def load_cities(settings: Settings, pool: AsyncConnectionPool) -> Cities:
    cities = {}
    for files in jurisdiction_files(settings):
        directory = load_directory(files.organisations_file)
        if directory.organisations:
            await asyncio.to_thread(seed_organisations, settings.database_url, [
                NewOrganisation(o.slug, o.name, o.kind, o.emails, o.webhook_url, files.id)
                for o in directory.organisations])
        async with pool.connection() as conn:
            known = [org for org in await organisations(conn) if org.jurisdiction == files.id]
        catalogue = load_catalogue_or_empty(files.services_file)
        router = Router.load(files.services_file, catalogue, {org.slug: org.id for org in known},
                             load_calendar(files.calendar_file), files.rules_dir / "zones")
        cities[files.id] = City(files, catalogue, router, known)
    return Cities(cities)
