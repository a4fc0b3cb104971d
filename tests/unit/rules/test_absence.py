from __future__ import annotations

from datetime import timedelta

from gateway.devices import DeviceDirectory
from gateway.rules.model import SweepWorld, device_context
from tests.unit.rules.helpers import T0, device, rule


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
    # Whichever replica received it, the first reading after the silence ends it, on the next sweep.
    back = T0 + timedelta(hours=4)
    assert r.sweep_questions(back, DeviceDirectory([dev]), lambda _: again.state).readings_after == {"D1": T0}
    world = SweepWorld(DeviceDirectory([dev]), {"D1": back + timedelta(minutes=5)}, {},
                       first_reading_after={"D1": back})
    resolved = r.sweep(back + timedelta(minutes=10), world, lambda _: again.state)
    assert [(f.action, f.time) for f in resolved.findings] == [("resolve", back)]
    assert resolved.states["D1"] == {"resolved_at": back.timestamp()}


def test_a_silence_is_not_over_until_a_reading_after_it_is_committed() -> None:
    r = rule(kind="absence", missed_reports=3)
    dev = device(expected_interval_s=3600)
    state = {"active": True, "since": T0.timestamp()}
    world = SweepWorld(DeviceDirectory([dev]), {"D1": T0}, {})  # nothing after T0 (a late one is no answer)
    assert r.sweep(T0 + timedelta(hours=5), world, lambda _: state).findings == []


def test_profile_default_and_fixed_after() -> None:
    r = rule(kind="absence", missed_reports=2)
    assert r.silence_allowed_s({}, 600) == 1500
    assert r.silence_allowed_s({"expected_interval_s": 60}, 600) == 150
    assert r.silence_allowed_s({}, None) is None
    assert rule(kind="absence", after="1h").silence_allowed_s({}, 60) == 3600


def test_never_seen_devices_are_not_silent() -> None:
    r = rule(kind="absence")
    assert r.check_silence(device_context(device(), "D1"), None, 60, None, T0).findings == []
