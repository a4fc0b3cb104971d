"""Loads `device_profiles/<name>/profile.yaml` and routes topics to the profile that claims them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import ValidationError

from gateway.profiles.decoders import Decoder
from gateway.profiles.model import ProfileConfig
from gateway.profiles.topics import TopicPattern

ROUTE_CACHE_SIZE = 200_000


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


@dataclass(frozen=True)
class Route:
    """The profiles that claim a topic, and the topic's placeholder values.

    Several profiles may share one topic layout (every sensor behind one LoRaWAN network server does):
    then the device's registered profile chooses among them.
    """

    candidates: tuple[Profile, ...]
    values: Mapping[str, str]

    @cached_property
    def device_id(self) -> str:
        return self.candidates[0].config.device_id_for(self.values)

    def choose(self, registered_profile: str | None) -> Profile | None:
        if len(self.candidates) == 1:
            return self.candidates[0]
        return next((p for p in self.candidates if p.name == registered_profile), None)


class ProfileSet:
    """The loaded profiles, and the routing from an incoming topic to the profiles that claim it."""

    def __init__(self, profiles: list[Profile]) -> None:
        groups: dict[str, list[Profile]] = {}
        for profile in sorted(profiles, key=lambda p: p.name):
            groups.setdefault(profile.pattern.subscription, []).append(profile)
        for subscription, group in groups.items():
            templates = {p.config.device_id for p in group}
            if len(templates) > 1:
                raise ProfileError(
                    f"profiles {', '.join(p.name for p in group)} share the topic filter {subscription!r} "
                    "but build the device id differently"
                )
        # More literal levels first, so `trucks/{device_id}/telemetry` wins over `trucks/{device_id}/#`.
        self._groups = sorted(
            (tuple(group) for group in groups.values()),
            key=lambda g: (-sum(lit is not None for lit in g[0].pattern.levels), g[0].name),
        )
        self.profiles = [p for group in self._groups for p in group]
        self.by_name: Mapping[str, Profile] = {p.name: p for p in profiles}
        self._routes: dict[str, Route] = {}

    @property
    def subscriptions(self) -> list[str]:
        return [group[0].pattern.subscription for group in self._groups]

    def route(self, topic: str) -> Route | None:
        # A device publishes on the same few topics all day: remember their routes (bounded).
        route = self._routes.get(topic)
        if route is not None:
            return route
        levels = topic.split("/")
        for group in self._groups:
            found = group[0].pattern.match(levels)
            if found is not None:
                if len(self._routes) >= ROUTE_CACHE_SIZE:
                    self._routes.clear()
                route = self._routes[topic] = Route(group, MappingProxyType(found))
                return route
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
    pattern = TopicPattern.parse(config.topic, require_device_id=config.device_id is None)
    return Profile(config, pattern, config.decoder.build())


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
