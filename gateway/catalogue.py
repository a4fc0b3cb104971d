"""The service catalogue (`services.yaml`): the categories citizens report in and device rules open."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


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


def load_service_codes(path: Path) -> frozenset[str] | None:
    """The catalogue's codes, or None when there is no catalogue file (then any code is accepted)."""
    if not path.exists():
        return None
    return load_catalogue(path).codes


def load_catalogue_or_empty(path: Path) -> Catalogue:
    return load_catalogue(path) if path.exists() else Catalogue(services=())
