"""The city simulator runs for as long as asked: a day of traffic, every message encodable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simulators.city import City


def test_a_day_of_traffic_is_generated_whole() -> None:
    start = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    messages = list(City(start).messages_until(start + timedelta(hours=24)))  # a LoRaWAN bin ran below 0 mm at 7.5 h
    lorawan = [payload for topic, payload in messages if topic.startswith("application/")]
    assert len(messages) > 50000 and len(lorawan) == 2 * 24 * 6 + 2
