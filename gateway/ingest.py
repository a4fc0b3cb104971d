"""The decode stage: a batch of RawMessages → Readings and Rejections, never an exception."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.events import RawMessage, Reading, Rejection
from gateway.normalize import Normalizer
from gateway.profiles.decoders import DecodeError, NotAReading
from gateway.profiles.loader import ProfileSet
from gateway.rate_limit import DeviceRateLimiter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestResult:
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Recognised messages that carry no reading (joins, acks, waypoints…), by kind.
    not_readings: Counter[str] = field(default_factory=Counter)


class Ingestor:
    def __init__(
        self,
        profiles: ProfileSet,
        normalizer: Normalizer,
        max_payload_bytes: int,
        clock: Callable[[], datetime],
        rate_limiter: DeviceRateLimiter | None = None,
    ) -> None:
        self.profiles = profiles
        self.normalizer = normalizer
        self.max_payload_bytes = max_payload_bytes
        self.clock = clock
        self.rate_limiter = rate_limiter

    def process(self, messages: Sequence[RawMessage]) -> IngestResult:
        result = IngestResult()
        now = self.clock()
        for message in messages:
            self._one(message, now, result)
        return result

    def _one(self, message: RawMessage, now: datetime, result: IngestResult) -> None:
        if len(message.payload) > self.max_payload_bytes:
            result.rejections.append(Rejection(
                message, "payload_too_large", f"{len(message.payload)} bytes > {self.max_payload_bytes}"))
            return
        route = self.profiles.route(message.topic)
        if route is None:
            result.rejections.append(Rejection(message, "no_profile", f"no profile matches {message.topic!r}"))
            return
        device_id = route.device_id
        if self.rate_limiter is not None and not self.rate_limiter.allow(device_id, message.received_at.timestamp()):
            result.rejections.append(Rejection(message, "rate_limited", f"{device_id!r} is over its rate limit",
                                               device_id=device_id))
            return
        device = self.normalizer.devices.get(device_id)
        profile = route.choose(device.profile if device else None)
        if profile is None:
            names = ", ".join(p.name for p in route.candidates)
            result.rejections.append(Rejection(
                message, "unknown_device",
                f"{device_id!r} must be registered with one of the profiles sharing this topic: {names}",
                device_id=device_id))
            return
        topic_values = route.values
        try:
            records = profile.decoder.decode(message.payload, topic_values)
        except NotAReading as counted:
            result.not_readings[counted.kind] += 1
            return
        except DecodeError as exc:
            result.rejections.append(Rejection(message, exc.reason, exc.detail, profile.name, device_id))
            return
        except Exception as exc:  # a decoder bug must cost one message, not the gateway
            log.exception("decoder %s crashed on a message on %s", profile.name, message.topic)
            result.rejections.append(Rejection(
                message, "decoder_error", f"{type(exc).__name__}: {exc}", profile.name, device_id))
            return
        for index, record in enumerate(records):
            try:
                outcome = self.normalizer.normalize(message, profile, device_id, record, index, now)
            except Exception as exc:  # e.g. a device attribute of the wrong type: one message, not the gateway
                log.exception("normalizing a message on %s failed", message.topic)
                outcome = Rejection(message, "decoder_error", f"{type(exc).__name__}: {exc}", profile.name, device_id)
            if isinstance(outcome, Reading):
                result.readings.append(outcome)
            else:
                result.rejections.append(outcome)
