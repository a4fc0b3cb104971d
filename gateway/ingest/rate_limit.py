"""The per-device limit, judged on the device's own clock.

A tracker that was out of coverage uploads what it buffered all at once, and a restarted gateway receives
its own backlog from the broker in milliseconds: counted on receive time, both look like a flood and were
thrown away. What no real sensor does is stamp more than a few readings within the same second of its own
clock, or send the same reading over and over. So readings are counted per device and per window of
*device time* (`window_s` seconds): at most `max_per_s × window_s` in one window. A backlog spread one
reading per second over half an hour passes whatever the speed it arrives at; a device repeating itself,
or whose clock stands still while it sends, is held to the limit, and the others are not affected.

A few recent windows are tracked per device, so a truck sending its live position between the readings
of its backlog (two streams far apart in device time) is counted per stream, not reset on each switch.
"""

from __future__ import annotations

import math

# Windows remembered per device: the live stream and a backlog being uploaded, with room to spare.
_TRACKED_WINDOWS = 4
# Beyond this many devices, those far from their limit are forgotten (they start afresh): bounded memory.
_MAX_DEVICES = 200_000


class DeviceRateLimiter:
    def __init__(self, max_per_s: float, window_s: float = 10.0) -> None:
        self.enabled = max_per_s > 0
        self.window_s = window_s
        self.per_window = max(1, math.ceil(max_per_s * window_s)) if self.enabled else 0
        # device → [window, count, window, count, …], the most recent window first
        self._windows: dict[str, list[int]] = {}

    def allow(self, device_id: str, device_time_s: float) -> bool:
        if not self.enabled:
            return True
        window = int(device_time_s // self.window_s)
        tracked = self._windows.get(device_id)
        if tracked is None:
            if len(self._windows) >= _MAX_DEVICES:
                self._forget_quiet()
            self._windows[device_id] = [window, 1]
            return True
        if tracked[0] == window:  # the device's latest window: the common case, without the loop below
            if tracked[1] >= self.per_window:
                return False
            tracked[1] += 1
            return True
        for i in range(2, len(tracked), 2):
            if tracked[i] == window:
                if tracked[i + 1] >= self.per_window:
                    return False
                tracked[i + 1] += 1
                return True
        tracked[0:0] = (window, 1)
        del tracked[2 * _TRACKED_WINDOWS:]
        return True

    def _forget_quiet(self) -> None:
        half = self.per_window // 2
        self._windows = {device: tracked for device, tracked in self._windows.items()
                         if any(count > half for count in tracked[1::2])}
