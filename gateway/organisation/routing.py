"""Which organisation a new incident goes to, with what priority and by when.

The service's `responsible`, unless its `routing` names another organisation for the zone the incident is
in (a district of the zone layer); a rule's incident can override the organisation, the priority and the
deadlines. Deadlines are counted from when the incident was registered, in working time of the calendar.
Incidents without a place go to the service's `responsible`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry

from gateway.catalogue import Catalogue, ServiceDefinition, unknown_organisations
from gateway.organisation.calendar import (
    DEFAULT_CALENDAR,
    ROUND_THE_CLOCK,
    CalendarError,
    WorkingCalendar,
    WorkingDuration,
)
from gateway.rules.zones import Zone, load_zones
from gateway.store.organisations import Assignment


class RoutingError(ValueError):
    """The catalogue names what does not exist: problems as `file:line: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class _ZoneRoute:
    geometry: BaseGeometry
    organisation: str


class Router:
    def __init__(self, catalogue: Catalogue, organisation_ids: Mapping[str, int],
                 calendar: WorkingCalendar = DEFAULT_CALENDAR, zones: Mapping[str, list[Zone]] | None = None) -> None:
        self.catalogue = catalogue
        self.organisation_ids = dict(organisation_ids)
        self.calendar = calendar
        self._services = {service.service_code: service for service in catalogue.services}
        self._zone_routes: dict[str, list[_ZoneRoute]] = {}
        for service in catalogue.services:
            if not service.routing:
                continue
            layer = (zones or {}).get(service.routing.layer, [])
            routes = []
            for zone in layer:
                slug = service.routing.zones.get(zone.name) or service.routing.zones.get(zone.id)
                if slug:
                    shapely.prepare(zone.geometry)
                    routes.append(_ZoneRoute(zone.geometry, slug))
            self._zone_routes[service.service_code] = routes

    @classmethod
    def load(cls, services_file: Path, catalogue: Catalogue, organisation_ids: Mapping[str, int],
             calendar: WorkingCalendar, zones_dir: Path) -> Router:
        """Refuses (RoutingError, with file:line) a catalogue naming an organisation that does not exist,
        or a zone layer that is not there."""
        problems = unknown_organisations(services_file, catalogue, organisation_ids.keys())
        zones = load_zones(zones_dir)
        for service in catalogue.services:
            if service.routing and service.routing.layer not in zones:
                problems.append(f"{services_file}: service {service.service_code}: routing: no zone layer "
                                f"{service.routing.layer!r} in {zones_dir}")
        if problems:
            raise RoutingError(problems)
        return cls(catalogue, organisation_ids, calendar, zones)

    def organisation_for(self, service_code: str, lat: float | None, lon: float | None) -> str | None:
        if lat is not None and lon is not None:
            point = shapely.Point(lon, lat)
            for route in self._zone_routes.get(service_code, ()):
                if route.geometry.covers(point):
                    return route.organisation
        service = self._services.get(service_code)
        return service.responsible or None if service else None

    def __call__(self, service_code: str, lat: float | None, lon: float | None, registered_at: datetime,
                 overrides: Mapping[str, object] | None = None) -> Assignment:
        overrides = overrides or {}
        service = self._services.get(service_code)
        slug = overrides.get("organisation") or self.organisation_for(service_code, lat, lon)
        priority = overrides.get("priority") or (service.priority if service else "normal")
        respond = overrides.get("respond_within") or (service.respond_within if service else None)
        resolve = overrides.get("resolve_within") or (service.resolve_within if service else None)
        return Assignment(
            organisation_id=self.organisation_ids.get(str(slug)) if slug else None,
            organisation=str(slug) if slug else None, priority=str(priority),
            respond_by=self._deadline(registered_at, respond, service), resolve_by=self._deadline(
                registered_at, resolve, service))

    def _deadline(self, registered_at: datetime, within: object, service: ServiceDefinition | None) -> datetime | None:
        """None when there is none, or when the calendar cannot place it (years of working time ahead):
        the incident is registered all the same."""
        if not isinstance(within, WorkingDuration):
            return None
        calendar = ROUND_THE_CLOCK if service is not None and service.round_the_clock else self.calendar
        try:
            return calendar.add(registered_at, within)
        except CalendarError:
            return None
