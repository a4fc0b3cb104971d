from __future__ import annotations

from datetime import timedelta

from gateway.rules.model import device_context, reading_context
from tests.unit.rules.helpers import T0, device, reading, rule


def test_silent_longer_than_missed_reports_opens_then_a_reading_resolves() -> None:
    r = rule(kind="absence", missed_reports=3)
    dev = device(expected_interval_s=3600)
    context = device_context(dev, "D1")
    quiet = r.check_silence(context, T0, None, None, T0 + timedelta(hours=3, minutes=29))
    assert quiet.findings == []  # the third report is late, not yet missed
    silent = r.check_silence(context, T0, None, None, T0 + timedelta(hours=3, minutes=31))
    assert [f.action for f in silent.findings] == ["open"] and silent.state["active"]
    again = r.check_silence(context, T0, None, silent.state, T0 + timedelta(hours=5))
    assert again.findings == []  # one incident, not one per sweep
    back = reading(4 * 3600)
    resolved = r.evaluate(back, reading_context(back, dev), again.state, back.time)
    assert [f.action for f in resolved.findings] == ["resolve"]


def test_profile_default_and_fixed_after() -> None:
    r = rule(kind="absence", missed_reports=2)
    assert r.silence_allowed_s({}, 600) == 1500
    assert r.silence_allowed_s({"expected_interval_s": 60}, 600) == 150
    assert r.silence_allowed_s({}, None) is None
    assert rule(kind="absence", after="1h").silence_allowed_s({}, 60) == 3600


def test_never_seen_devices_are_not_silent() -> None:
    r = rule(kind="absence")
    assert r.check_silence(device_context(device(), "D1"), None, 60, None, T0).findings == []
