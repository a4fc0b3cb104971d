from __future__ import annotations

import pytest

from gateway.events import CANONICAL_FIELDS
from gateway.rules.model import ContextWith, device_context, reading_context
from gateway.rules.templates import render
from tests.unit.rules.helpers import device, reading


def test_a_reading_context_shows_every_field_the_conditions_and_templates_may_use() -> None:
    r = reading(30, fill_pct=85.0, temperature_c=21.5, extra={"ignition": True})
    dev = device(bin_depth_mm=1200)
    context = reading_context(r, dev)
    as_dict = dict(context)
    assert set(as_dict) == {*CANONICAL_FIELDS, "extra", "device", "device_id", "time"}
    assert as_dict["fill_pct"] == 85.0 and as_dict["lat"] is None
    assert as_dict["extra"] == {"ignition": True}
    assert as_dict["device"] == device_context(dev, "D1") and as_dict["device"]["bin_depth_mm"] == 1200
    assert as_dict["device_id"] == "D1" and as_dict["time"] == "2026-11-23T08:00:30+00:00"
    assert context.get("zone") is None and "zone" not in context
    with pytest.raises(KeyError):
        context["zone"]
    assert render("{device.name} {fill_pct:.0f}% {extra.ignition} {zone.name}", context) == "Dev D1 85% True ?"


def test_a_context_built_from_a_device_context_uses_it_as_is() -> None:
    r = reading(0, fill_pct=10.0)
    shared = device_context(device(), "D1")
    assert reading_context(r, shared)["device"] is shared
    assert reading_context(r, None)["device"] == {"id": "D1"}


def test_a_context_with_one_more_name() -> None:
    base = reading_context(reading(0, speed_kmh=40.0), device(kind="truck"))
    with_zone = ContextWith(base, zone={"name": "School", "speed_limit_kmh": 30})
    assert with_zone["zone"]["name"] == "School" and with_zone["speed_kmh"] == 40.0
    assert len(with_zone) == len(base) + 1 and set(with_zone) == {*base, "zone"}
    assert render("{speed_kmh:.0f} in {zone.name}", with_zone) == "40 in School"
    assert ContextWith(with_zone, zone={})["zone"] == {}  # the nearer name wins
