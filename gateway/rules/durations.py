"""Durations as people write them in rule files: `90s`, `10m`, `2h`, `1d`, `1h30m`, or a number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise ValueError(f"not a duration: {value!r}") from None
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            try:
                return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
            except OverflowError:
                raise ValueError(f"too long a duration: {value!r}") from None
    raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 10m, 2h, 1d)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
