"""Timestamp formats devices send, all turned into aware UTC datetimes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

TimeFormat = Literal["auto", "iso8601", "epoch_ms", "epoch_s"]

# Epoch values above this are taken as milliseconds by `auto` (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000


class TimestampError(ValueError):
    pass


def parse_timestamp(value: object, fmt: TimeFormat = "auto") -> datetime:
    if isinstance(value, bool) or value is None:
        raise TimestampError(f"not a timestamp: {value!r}")
    if isinstance(value, str) and fmt in ("auto", "iso8601"):
        stripped = value.strip()
        if fmt == "auto" and _looks_numeric(stripped):
            return _from_epoch(float(stripped), "auto")
        return _from_iso(stripped)
    if isinstance(value, int | float) and fmt != "iso8601":
        return _from_epoch(float(value), fmt)
    if isinstance(value, str) and _looks_numeric(value.strip()):
        return _from_epoch(float(value), fmt)
    raise TimestampError(f"expected {fmt} timestamp, got {value!r}")


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _looks_numeric(text: str) -> bool:
    # A pattern, not float(): almost every timestamp string is ISO 8601, and a failed float() raises.
    return _NUMBER.fullmatch(text) is not None


def _from_iso(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TimestampError(f"not an ISO-8601 timestamp: {text!r}") from exc
    # A timestamp without an offset is read as UTC, as Traccar and ThingsBoard do.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _from_epoch(number: float, fmt: TimeFormat) -> datetime:
    if number != number or number in (float("inf"), float("-inf")):
        raise TimestampError(f"not a finite epoch: {number!r}")
    seconds = number / 1000 if fmt == "epoch_ms" or (fmt == "auto" and abs(number) >= _MS_THRESHOLD) else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise TimestampError(f"epoch out of range: {number!r}") from exc
