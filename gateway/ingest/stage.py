"""The decode stage: a batch of RawMessages → Readings, Rejections and device upkeep, never an exception.

Per message: size limit → route (topic → device and profile) → decode → normalize each record → the
per-device limit on the device's clock. Every message that yields no reading leaves a Rejection with its
reason (the dead letter) or is counted as a recognised non-reading (joins, acks, waypoints).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.devices import DeviceDirectory
from gateway.events import Batch, DeviceSeen, RawMessage, Reading, Rejection
from gateway.ingest.frame_counters import FrameCounters
from gateway.ingest.normalize import Normalizer
from gateway.ingest.rate_limit import DeviceRateLimiter
from gateway.ingest.routing import Router, Unrouted
from gateway.profiles.decoders import DecodeError, NotAReading
from gateway.profiles.loader import ProfileSet

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_payload_bytes: int = 64 * 1024
    max_future: timedelta = timedelta(minutes=10)
    max_past: timedelta = timedelta(days=7)


@dataclass(slots=True)
class IngestResult:
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Recognised messages that carry no reading (joins, acks, waypoints…), by kind.
    not_readings: Counter[str] = field(default_factory=Counter)
    devices_seen: list[DeviceSeen] = field(default_factory=list)
    # For each message of the batch, the length of `readings` after it: a batch the store refuses is split
    # into its messages without decoding (and counting against the rate limit) a second time.
    ends: list[int] = field(default_factory=list)

    def batch(self) -> Batch:
        return Batch(self.readings, self.rejections, self.devices_seen)

    def per_message(self, messages: Sequence[RawMessage]) -> list[tuple[RawMessage, Batch]]:
        rejected: dict[int, list[Rejection]] = {}
        for rejection in self.rejections:
            rejected.setdefault(id(rejection.message), []).append(rejection)
        kinds = {seen.profile: seen.kind for seen in self.devices_seen}
        split = []
        start = 0
        for message, end in zip(messages, self.ends, strict=True):
            readings = self.readings[start:end]
            split.append((message, Batch(readings, rejected.get(id(message), []), devices_seen(readings, kinds))))
            start = end
        return split


def devices_seen(readings: Sequence[Reading], kinds_by_profile: Mapping[str, str]) -> list[DeviceSeen]:
    """The registry's upkeep for a batch: last heard of, and what the LoRaWAN decoders noted in `extra`."""
    seen: dict[str, DeviceSeen] = {}
    for reading in readings:
        device = seen.get(reading.device_id)
        if device is None:
            device = seen[reading.device_id] = DeviceSeen(
                reading.device_id, reading.profile, kinds_by_profile[reading.profile], reading.received_at,
                last_reading_at=reading.time)
        else:
            if reading.received_at > device.last_received_at:
                device.last_received_at = reading.received_at
            if device.last_reading_at is None or reading.time > device.last_reading_at:
                device.last_reading_at = reading.time
        if reading.extra:
            device.frames_lost += reading.extra.get("frames_lost", 0)
            if isinstance(f_cnt := reading.extra.get("f_cnt"), int):
                device.last_f_cnt = f_cnt
    return list(seen.values())


class Ingestor:
    def __init__(
        self,
        profiles: ProfileSet,
        devices: DeviceDirectory,
        clock: Callable[[], datetime],
        limits: IngestLimits = IngestLimits(),
        frame_counters: FrameCounters | None = None,
        rate_limiter: DeviceRateLimiter | None = None,
    ) -> None:
        self.profiles = profiles
        self.devices = devices
        self.router = Router(profiles, devices)
        self.normalizer = Normalizer(devices, limits.max_future, limits.max_past, frame_counters)
        self.max_payload_bytes = limits.max_payload_bytes
        self.clock = clock
        self.rate_limiter = rate_limiter if rate_limiter is not None and rate_limiter.enabled else None
        self.kinds_by_profile = {p.name: p.config.kind for p in profiles.profiles}

    def process(self, messages: Sequence[RawMessage]) -> IngestResult:
        result = IngestResult()
        now = self.clock()
        ends = result.ends
        readings = result.readings
        for message in messages:
            self._one(message, now, result)
            ends.append(len(readings))
        result.devices_seen = devices_seen(readings, self.kinds_by_profile)
        return result

    def _one(self, message: RawMessage, now: datetime, result: IngestResult) -> None:
        if len(message.payload) > self.max_payload_bytes:
            result.rejections.append(Rejection(
                message, "payload_too_large", f"{len(message.payload)} bytes > {self.max_payload_bytes}"))
            return
        routed = self.router.route(message.topic)
        if isinstance(routed, Unrouted):
            result.rejections.append(Rejection(message, routed.reason, routed.detail, device_id=routed.device_id))
            return
        device_id, profile, topic_values = routed
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
        limiter = self.rate_limiter
        for index, record in enumerate(records):
            try:
                outcome = self.normalizer.normalize(message, profile, device_id, record, index, now)
            except Exception as exc:  # e.g. a device attribute of the wrong type: one message, not the gateway
                log.exception("normalizing a message on %s failed", message.topic)
                outcome = Rejection(message, "decoder_error", f"{type(exc).__name__}: {exc}", profile.name, device_id)
            if isinstance(outcome, Reading):
                if limiter is not None and not limiter.allow(device_id, outcome.time.timestamp()):
                    outcome = Rejection(
                        message, "rate_limited",
                        f"{device_id!r}: more than {limiter.per_window} readings within {limiter.window_s:g} s "
                        f"of its clock (at {outcome.time.isoformat()})", profile.name, device_id)
                else:
                    result.readings.append(outcome)
                    continue
            result.rejections.append(outcome)
