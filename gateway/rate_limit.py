"""A token bucket per device: a device flooding the gateway is held to its rate, the excess dead-lettered
as `rate_limited`, and the other devices are not slowed down."""

from __future__ import annotations


class DeviceRateLimiter:
    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = rate_per_s
        self.burst = max(burst, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}  # device → (tokens, time of last update)

    def allow(self, device_id: str, now_s: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.get(device_id, (self.burst, now_s))
        tokens = min(self.burst, tokens + (now_s - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[device_id] = (tokens - 1.0 if allowed else tokens, now_s)
        if len(self._buckets) > 200_000:
            self._forget_full(now_s)
        return allowed

    def _forget_full(self, now_s: float) -> None:
        """Buckets that have refilled are the same as no bucket: drop them to bound memory."""
        refill_s = self.burst / self.rate
        self._buckets = {d: b for d, b in self._buckets.items() if now_s - b[1] < refill_s}
