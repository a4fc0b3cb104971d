"""Loads `device_profiles/<name>/profile.yaml` and routes topics to the profile that claims them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from gateway.profiles.decoders import Decoder
from gateway.profiles.model import ProfileConfig
from gateway.profiles.topics import TopicPattern


class ProfileError(ValueError):
    """A profile file that cannot be used, with the file and the reason."""


@dataclass(frozen=True)
class Profile:
    config: ProfileConfig
    pattern: TopicPattern
    decoder: Decoder

    @property
    def name(self) -> str:
        return self.config.name


class ProfileSet:
    """The loaded profiles, and the routing from an incoming topic to (profile, placeholder values)."""

    def __init__(self, profiles: list[Profile]) -> None:
        seen: dict[str, str] = {}
        for profile in profiles:
            if profile.pattern.subscription in seen:
                raise ProfileError(
                    f"profiles {seen[profile.pattern.subscription]!r} and {profile.name!r} "
                    f"claim the same topic filter {profile.pattern.subscription!r}"
                )
            seen[profile.pattern.subscription] = profile.name
        # More literal levels first, so `trucks/{device_id}/telemetry` wins over `trucks/{device_id}/#`.
        self.profiles = sorted(
            profiles, key=lambda p: (-sum(lit is not None for lit in p.pattern.levels), p.name)
        )
        self.by_name: Mapping[str, Profile] = {p.name: p for p in profiles}

    @property
    def subscriptions(self) -> list[str]:
        return [p.pattern.subscription for p in self.profiles]

    def route(self, topic: str) -> tuple[Profile, dict[str, str]] | None:
        levels = topic.split("/")
        for profile in self.profiles:
            found = profile.pattern.match(levels)
            if found is not None:
                return profile, found
        return None


def load_profile(path: Path) -> Profile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", path.parent.name)
    try:
        config = ProfileConfig.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_describe(exc)}") from exc
    if config.name != path.parent.name:
        raise ProfileError(f"{path}: name {config.name!r} differs from its folder {path.parent.name!r}")
    return Profile(config, TopicPattern.parse(config.topic), config.decoder.build())


def load_profiles(directory: Path) -> ProfileSet:
    if not directory.is_dir():
        raise ProfileError(f"{directory}: profiles directory not found")
    files = sorted(directory.glob("*/profile.yaml"))
    if not files:
        raise ProfileError(f"{directory}: no */profile.yaml found")
    return ProfileSet([load_profile(path) for path in files])


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()
    )
