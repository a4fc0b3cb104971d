"""Golden test cases of every shipped profile: device_profiles/<name>/testcases/<case>/.

`input.json` (or `input.hex` for binary payloads) is the payload as the device sends it; `expected.json`
gives the topic, the gateway's `now`, optionally the registered device's attributes, and either the
readings (every field not listed must be empty) or the dead-letter reason.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from gateway.devices import Device, DeviceDirectory
from gateway.events import RawMessage, Reading
from gateway.ingest import Ingestor
from gateway.normalize import Normalizer
from gateway.profiles.loader import load_profiles
from tests.support import REPO

PROFILES_DIR = REPO / "device_profiles"
CASES = sorted(PROFILES_DIR.glob("*/testcases/*/expected.json"))
_SKIP = {"received_at", "message_key", "profile"}


def _payload(case: Path) -> bytes:
    if (case / "input.hex").exists():
        return bytes.fromhex((case / "input.hex").read_text().strip())
    return (case / "input.json").read_bytes().strip()


def _as_json(reading: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(reading):
        value = getattr(reading, f.name)
        if f.name in _SKIP or value is None or (f.name == "extra" and not value):
            continue
        out[f.name] = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else (
            dict(value) if f.name == "extra" else value)
    return out


def test_every_profile_has_cases() -> None:
    with_cases = {path.parts[-4] for path in CASES}
    assert with_cases == {p.parent.name for p in PROFILES_DIR.glob("*/profile.yaml")}


@pytest.mark.parametrize("expected_file", CASES, ids=lambda p: f"{p.parts[-4]}/{p.parts[-2]}")
def test_golden_case(expected_file: Path) -> None:
    case = expected_file.parent
    expected = json.loads(expected_file.read_text())
    profiles = load_profiles(PROFILES_DIR)
    profile_name = case.parent.parent.name
    routed = profiles.route(expected["topic"])
    assert routed is not None and routed[0].name == profile_name, "the topic must route to this profile"
    devices = DeviceDirectory()
    if "device" in expected:
        devices.add(Device(routed[1]["device_id"], profile_name, routed[0].config.kind,
                           attributes=MappingProxyType(expected["device"])))
    now = datetime.fromisoformat(expected["now"])
    ingestor = Ingestor(profiles, Normalizer(devices, timedelta(minutes=10), timedelta(days=7)), 65536, lambda: now)
    result = ingestor.process([RawMessage(expected["topic"], _payload(case), now)])
    if "rejected" in expected:
        assert [r.reason for r in result.rejections] == [expected["rejected"]], result.rejections
        assert result.readings == []
    else:
        assert result.rejections == []
        assert [_as_json(r) for r in result.readings] == expected["readings"]
