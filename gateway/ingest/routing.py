"""Topic → (device, profile): the profiles whose topic pattern matches, and among profiles sharing one
layout (every sensor behind one LoRaWAN network server does), the one the device is registered with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from gateway.devices import DeviceDirectory
from gateway.profiles.loader import Profile, ProfileSet


class Routed(NamedTuple):  # one per message: a named tuple builds fastest
    device_id: str
    profile: Profile
    topic_values: Mapping[str, str]  # the topic's placeholders, as the decoder wants them


@dataclass(frozen=True, slots=True)
class Unrouted:
    """Why a topic could not be routed, as a dead-letter reason and detail."""

    reason: str
    detail: str
    device_id: str | None = None


class Router:
    def __init__(self, profiles: ProfileSet, devices: DeviceDirectory) -> None:
        self.profiles = profiles
        self.devices = devices

    def route(self, topic: str) -> Routed | Unrouted:
        route = self.profiles.route(topic)
        if route is None:
            return Unrouted("no_profile", f"no profile matches {topic!r}")
        device_id = route.device_id
        device = self.devices.get(device_id)
        profile = route.choose(device.profile if device else None)
        if profile is None:
            names = ", ".join(p.name for p in route.candidates)
            return Unrouted("unknown_device",
                            f"{device_id!r} must be registered with one of the profiles sharing this topic: {names}",
                            device_id)
        return Routed(device_id, profile, route.values)
