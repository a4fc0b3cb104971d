"""Several municipalities on one instance (GeoReport v2's `jurisdiction_id`).

With `WASTEGATE_JURISDICTIONS_DIR`, each folder in it is one municipality, named by its id: its
`jurisdiction.yaml` (name, language, contact), `services.yaml`, `organisations.yaml`, `calendar.yaml`
(and holidays), and `rules/` (rule files, `zones/`, `data/`). Devices, incidents, organisations and staff
belong to one of them, and nothing of one is shown to another's staff or in another's Open311 endpoint.
Without it, the instance is one city from the top-level files, with the id '' (no configuration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.settings import Settings

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class JurisdictionError(ValueError):
    pass


class JurisdictionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    language: Literal["en", "ca", "es"] | None = None
    # For the Open311 discovery document.
    contact: str = Field(default="", max_length=500)
    key_service: str = Field(default="", max_length=500)


@dataclass(frozen=True)
class JurisdictionFiles:
    id: str
    name: str
    language: str
    contact: str
    key_service: str
    services_file: Path
    organisations_file: Path
    calendar_file: Path
    rules_dir: Path


def jurisdiction_files(settings: Settings) -> list[JurisdictionFiles]:
    if settings.jurisdictions_dir is None:
        return [JurisdictionFiles("", "", settings.language, "", "", settings.services_file,
                                  settings.organisations_file, settings.calendar_file, settings.rules_dir)]
    root = settings.jurisdictions_dir
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    found = []
    for folder in folders:
        if not ID_PATTERN.match(folder.name):
            raise JurisdictionError(f"{folder}: a jurisdiction's folder is its id: lower-case letters, digits, _ . -")
        spec_file = folder / "jurisdiction.yaml"
        try:
            spec = JurisdictionSpec.model_validate(yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise JurisdictionError(f"{spec_file}: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise JurisdictionError(f"{spec_file}: {problems}") from None
        found.append(JurisdictionFiles(folder.name, spec.name, spec.language or settings.language, spec.contact,
                                       spec.key_service, folder / "services.yaml", folder / "organisations.yaml",
                                       folder / "calendar.yaml", folder / "rules"))
    if not found:
        raise JurisdictionError(f"{root}: no jurisdiction folder (each with a jurisdiction.yaml)")
    return found
