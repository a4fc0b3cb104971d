"""Simulated time: a start and a speed-up. The gateway gets the same clock (it is injected), so rules'
durations and sweeps run at the simulator's pace."""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class SimClock:
    def __init__(self, start: datetime, speedup: float = 1.0) -> None:
        self.start = start
        self.speedup = speedup
        self._wall_start = time.monotonic()

    def restart(self) -> None:
        """Simulated time starts (again) from `start`, now."""
        self._wall_start = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._wall_start) * self.speedup)

    def elapsed(self) -> timedelta:
        return self.now() - self.start

    def __call__(self) -> datetime:
        return self.now()
