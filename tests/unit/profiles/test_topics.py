from __future__ import annotations

import pytest

from gateway.profiles.topics import TopicPattern, TopicPatternError


def test_placeholder_becomes_a_single_level_wildcard() -> None:
    pattern = TopicPattern.parse("trucks/{device_id}/telemetry")
    assert pattern.subscription == "trucks/+/telemetry"
    assert pattern.match(["trucks", "T1", "telemetry"]) == {"device_id": "T1"}
    assert pattern.match(["trucks", "T1", "status"]) is None
    assert pattern.match(["trucks", "T1", "telemetry", "x"]) is None
    assert pattern.match(["trucks", "", "telemetry"]) is None


def test_several_placeholders_and_a_multi_level_tail() -> None:
    pattern = TopicPattern.parse("application/{application_id}/device/{device_id}/event/#")
    assert pattern.subscription == "application/+/device/+/event/#"
    assert pattern.match(["application", "7", "device", "0102", "event", "up", "x"]) == {
        "application_id": "7", "device_id": "0102", "#": "up/x"}
    # as in MQTT, `event/#` also matches `event` itself
    assert pattern.match(["application", "7", "device", "0102", "event"]) == {
        "application_id": "7", "device_id": "0102", "#": ""}
    assert pattern.match(["application", "7", "device", "0102"]) is None


@pytest.mark.parametrize("bad", ["trucks/+/telemetry", "trucks/{id}/telemetry", "trucks/x{device_id}/t",
                                 "a/#/{device_id}", "{device_id}/{device_id}"])
def test_malformed_patterns_are_refused(bad: str) -> None:
    with pytest.raises(TopicPatternError):
        TopicPattern.parse(bad)
