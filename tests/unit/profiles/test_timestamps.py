from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.profiles.decoders.timestamps import TimestampError, parse_timestamp

MOMENT = datetime(2026, 11, 23, 8, 15, 2, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2026-11-23T08:15:02Z", "2026-11-23T09:15:02+01:00", "2026-11-23T08:15:02",
                                   1795421702000, 1795421702, "1795421702000", 1795421702.0])
def test_auto_reads_iso_and_epoch_seconds_or_milliseconds(value: object) -> None:
    assert parse_timestamp(value) == MOMENT


def test_explicit_formats() -> None:
    assert parse_timestamp(1795421702000, "epoch_ms") == MOMENT
    assert parse_timestamp(1795421702, "epoch_s") == MOMENT
    with pytest.raises(TimestampError):
        parse_timestamp(1795421702, "iso8601")


@pytest.mark.parametrize("value", ["yesterday", True, None, float("nan"), 1e300, [], "2026-13-01T00:00:00Z"])
def test_garbage_is_refused(value: object) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(value)
