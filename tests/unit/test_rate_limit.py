"""The per-device limit judges a device by its own clock: a backlog passes at any speed, a device
stamping too many readings within seconds of its clock is held to the limit, the others are untouched."""

from __future__ import annotations

import pytest

from gateway.ingest import rate_limit
from gateway.ingest.rate_limit import DeviceRateLimiter

T0 = 1_795_400_000.0  # an epoch second in November 2026


def test_a_backlog_spread_over_device_time_passes_however_fast_it_arrives() -> None:
    limiter = DeviceRateLimiter(20, 10)
    # ten trucks, 5,000 buffered fixes each, one per second of their clocks, handed over interleaved
    verdicts = [limiter.allow(f"T{truck}", T0 + second) for second in range(5000) for truck in range(10)]
    assert all(verdicts) and len(verdicts) == 50_000


def test_a_device_stamping_too_many_readings_within_its_seconds_is_held_to_the_limit() -> None:
    limiter = DeviceRateLimiter(20, 10)
    flood = [limiter.allow("F", T0 + i / 1000) for i in range(2000)]  # 2,000 readings within 2 s
    assert sum(flood) == 200  # one window of 10 s holds 200
    assert all(limiter.allow(f"T{n}", T0 + 1) for n in range(50))  # the others are not affected
    assert limiter.allow("F", T0 + 10)  # the next window of its clock is allowed again


def test_repeats_of_the_same_reading_are_limited() -> None:
    limiter = DeviceRateLimiter(20, 10)
    assert sum(limiter.allow("R", T0) for _ in range(1000)) == 200


def test_live_positions_between_a_backlog_do_not_reset_or_exhaust_each_other() -> None:
    limiter = DeviceRateLimiter(1, 10)  # ten readings per 10 s window
    live, backlog = T0 + 3600, T0
    verdicts = []
    for second in range(600):  # the live stream and the backlog, alternating reading by reading
        verdicts.append(limiter.allow("T", live + second))
        verdicts.append(limiter.allow("T", backlog + second))
    assert all(verdicts)
    # and a flood within one window of either stream is still held
    assert sum(limiter.allow("T", backlog + 700) for _ in range(50)) == 10


def test_zero_turns_the_limit_off() -> None:
    limiter = DeviceRateLimiter(0)
    assert not limiter.enabled and all(limiter.allow("F", T0) for _ in range(10_000))


def test_memory_is_bounded_by_forgetting_devices_far_from_their_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "_MAX_DEVICES", 100)
    limiter = DeviceRateLimiter(1, 10)
    for _ in range(10):
        limiter.allow("busy", T0)  # at its limit: remembered
    for n in range(500):
        limiter.allow(f"quiet{n}", T0)
    assert len(limiter._windows) <= 101
    assert not limiter.allow("busy", T0)  # still held
