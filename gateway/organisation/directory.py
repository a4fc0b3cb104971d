"""Organisations as the city declares them: `organisations.yaml` (slug, name, kind, e-mail addresses,
webhook), imported into the store at start, and `wastegate orgs add` for more. Members are kept in the
store only (they are console users).

E-mail addresses are checked with `email-validator` (syntax only: no DNS lookup at load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Kind = Literal["department", "partner"]
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class DirectoryError(ValueError):
    pass


def normalized_email(address: str) -> str:
    """The address in its normal form, or ValueError saying why it is not one."""
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not an e-mail address: {address!r} ({exc})") from None


class OrganisationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: Kind
    emails: tuple[str, ...] = ()
    webhook_url: str | None = Field(default=None, pattern=r"^https?://", max_length=2000)

    @field_validator("emails")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalized_email(address) for address in value)


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    organisations: tuple[OrganisationSpec, ...] = ()


def load_directory(path: Path) -> Directory:
    """The organisations file, or an empty directory when there is none; problems as `file:line: reason`."""
    if not path.exists():
        return Directory()
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise DirectoryError(f"{path}: {exc}") from exc
    try:
        directory = Directory.model_validate(data or {})
    except ValidationError as exc:
        raise DirectoryError("\n".join(f"{path}:{line_of(root, error['loc'])}: "
                                       f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                                       for error in exc.errors())) from None
    slugs = [o.slug for o in directory.organisations]
    twice = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if twice:
        raise DirectoryError(f"{path}: organisation(s) listed twice: {', '.join(twice)}")
    return directory


def line_of(root: yaml.Node | None, loc: tuple[int | str, ...] | list[int | str]) -> int:
    """The line (1-based) of the deepest node of `loc` in a composed YAML document."""
    node = root
    line = root.start_mark.line + 1 if root is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == key), None)
            if found is None:
                break
            node = found[1]
            line = found[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line
