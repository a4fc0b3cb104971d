from __future__ import annotations

from gateway.ingest.frame_counters import FrameCounters


def test_gaps_are_lost_frames() -> None:
    counters = FrameCounters()
    assert [counters.observe("d", n) for n in (5, 6, 9, 10, 20)] == [0, 0, 2, 0, 9]
    assert counters.last("d") == 20


def test_late_or_redelivered_frames_and_resets() -> None:
    counters = FrameCounters({"d": 100})
    assert counters.observe("d", 98) == 0 and counters.last("d") == 100  # late: already counted
    assert counters.observe("d", 0) == 0 and counters.last("d") == 0  # the device rejoined
    assert counters.observe("d", 3) == 2
    counters = FrameCounters({"d": 5000})
    assert counters.observe("d", 12) == 0 and counters.observe("d", 13) == 0  # a reset we did not see
    assert counters.observe("d", 13 + 100_000) == 0  # an implausible jump is a reset too, not 100,000 losses


def test_devices_are_independent() -> None:
    counters = FrameCounters()
    counters.observe("a", 1)
    assert counters.observe("b", 50) == 0 and counters.observe("a", 3) == 1
