"""LoRaWAN frame counters per device: a jump in the counter is uplinks lost on the radio path."""

from __future__ import annotations

# A counter that goes back by more than this is a device that rejoined (its counter restarts at 0), not
# a late or redelivered frame.
_RESET_BACKSTEP = 64
# A jump larger than this is taken as a counter reset we did not see, not as that many lost frames.
_MAX_PLAUSIBLE_GAP = 16384


class FrameCounters:
    def __init__(self, last_seen: dict[str, int] | None = None) -> None:
        self._last: dict[str, int] = dict(last_seen or {})

    def observe(self, device_id: str, f_cnt: int) -> int:
        """Records a frame; returns how many frames were lost just before it."""
        last = self._last.get(device_id)
        if last is None:
            self._last[device_id] = f_cnt
            return 0
        if f_cnt > last:
            self._last[device_id] = f_cnt
            gap = f_cnt - last - 1
            return gap if gap <= _MAX_PLAUSIBLE_GAP else 0
        if f_cnt == 0 or last - f_cnt > _RESET_BACKSTEP:
            self._last[device_id] = f_cnt
        # else: a late or redelivered frame, already counted
        return 0

    def last(self, device_id: str) -> int | None:
        return self._last.get(device_id)
