"""The service catalogue (`services.yaml`): the categories citizens report in and device rules open."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.organisation.calendar import WorkingTime
from gateway.organisation.directory import line_of

Priority = Literal["low", "normal", "high", "urgent"]


class ZoneRouting(BaseModel):
    """Incidents of a service in one of these zones (by name or id, in the zone layer `layer` of the rules'
    zones) go to that zone's organisation; elsewhere, to the service's `responsible`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layer: str = Field(default="districtes", pattern=r"^[A-Za-z0-9_.-]+$")
    zones: dict[str, str] = Field(default_factory=dict)


class ServiceDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service_code: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    service_name: str
    # Whether Open311 lists the service's incidents. Required, so that no service is published by an
    # omission: those about households or vehicles (addresses, tags, plates) are `false`.
    public: bool
    description: str = ""
    group: str = ""
    keywords: tuple[str, ...] = ()
    responsible: str = ""
    # `proposal`: a suggestion for improvement rather than a fault; reported, routed and worked the same way.
    kind: Literal["problem", "proposal"] = "problem"
    routing: ZoneRouting | None = None
    priority: Priority = "normal"
    # Deadlines in working time, from when the incident is registered; none when not set. A service that
    # never closes (a fire) counts every hour of every day instead of the calendar's working hours.
    round_the_clock: bool = False
    respond_within: WorkingTime | None = None
    resolve_within: WorkingTime | None = None
    # Open311 service definition attributes (extra questions for the reporter), as the spec describes.
    attributes: tuple[dict[str, object], ...] = ()


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    services: tuple[ServiceDefinition, ...]

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(s.service_code for s in self.services)


class CatalogueError(ValueError):
    pass


def load_catalogue(path: Path) -> Catalogue:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        catalogue = Catalogue.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    codes = [s.service_code for s in catalogue.services]
    if len(codes) != len(set(codes)):
        raise CatalogueError(f"{path}: a service_code is listed twice")
    return catalogue


def unknown_organisations(path: Path, catalogue: Catalogue, known: Collection[str]) -> list[str]:
    """`file:line: reason` for each organisation the catalogue names that is not in `known`."""
    root = yaml.compose(path.read_text(encoding="utf-8")) if path.exists() else None
    problems = []
    for index, service in enumerate(catalogue.services):
        if service.responsible and service.responsible not in known:
            problems.append(f"{path}:{line_of(root, ('services', index, 'responsible'))}: service "
                            f"{service.service_code}: unknown organisation {service.responsible!r}")
        for zone, slug in (service.routing.zones.items() if service.routing else ()):
            if slug not in known:
                problems.append(f"{path}:{line_of(root, ('services', index, 'routing', 'zones', zone))}: service "
                                f"{service.service_code}: zone {zone}: unknown organisation {slug!r}")
    return problems


def load_service_codes(path: Path) -> frozenset[str] | None:
    """The catalogue's codes, or None when there is no catalogue file (then any code is accepted)."""
    if not path.exists():
        return None
    return load_catalogue(path).codes


def load_catalogue_or_empty(path: Path) -> Catalogue:
    return load_catalogue(path) if path.exists() else Catalogue(services=())
