"""Golden test cases of a profile: `device_profiles/<name>/testcases/<case>/`.

`input.json` (or `input.hex` for a bare binary payload) is the payload as the device or network server
sends it; `expected.json` gives the `topic`, the gateway's `now`, optionally the registered `device`'s
attributes, and one outcome: `readings` (every field not listed must be empty), `rejected` (the dead-letter
reason) or `not_reading` (the kind of a message that is counted, not stored).
Run by `wastegate profiles check` and by the test suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.devices import Device, DeviceDirectory
from gateway.events import RawMessage, Reading
from gateway.ingest import IngestLimits, Ingestor
from gateway.profiles.loader import ProfileSet

_NOT_COMPARED = {"received_at", "message_key", "profile"}


@dataclass(frozen=True)
class CaseOutcome:
    case: Path
    problems: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.case.parent.parent.name}/{self.case.name}"

    @property
    def ok(self) -> bool:
        return not self.problems


def discover(profiles_dir: Path) -> list[Path]:
    return sorted(path.parent for path in profiles_dir.glob("*/testcases/*/expected.json"))


def payload_of(case: Path) -> bytes:
    if (case / "input.hex").exists():
        return bytes.fromhex((case / "input.hex").read_text().strip())
    return (case / "input.json").read_bytes().strip()


def reading_as_json(reading: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in reading._fields:
        value = getattr(reading, name)
        if name in _NOT_COMPARED or value is None or (name == "extra" and not value):
            continue
        if isinstance(value, datetime):
            value = value.isoformat().replace("+00:00", "Z")
        elif name == "extra":
            value = dict(value)
        out[name] = value
    return out


def run_case(case: Path, profiles: ProfileSet) -> CaseOutcome:
    def fail(*problems: str) -> CaseOutcome:
        return CaseOutcome(case, problems)

    try:
        expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))
        payload = payload_of(case)
    except (OSError, ValueError) as exc:
        return fail(f"cannot read the case: {exc}")
    profile_name = case.parent.parent.name
    profile = profiles.by_name.get(profile_name)
    route = profiles.route(expected.get("topic", ""))
    if profile is None or route is None or profile not in route.candidates:
        return fail(f"topic {expected.get('topic')!r} does not route to profile {profile_name!r}")
    devices = DeviceDirectory()
    if "device" in expected:
        devices.add(Device(route.device_id, profile_name, profile.config.kind,
                           attributes=MappingProxyType(expected["device"])))
    now = datetime.fromisoformat(expected["now"])
    ingestor = Ingestor(profiles, devices, lambda: now, IngestLimits(65536, timedelta(minutes=10), timedelta(days=7)))
    result = ingestor.process([RawMessage(expected["topic"], payload, now)])
    got_readings = [reading_as_json(r) for r in result.readings]
    got_reasons = [f"{r.reason}: {r.detail}" for r in result.rejections]
    if "rejected" in expected:
        if [r.reason for r in result.rejections] != [expected["rejected"]] or got_readings:
            return fail(f"expected rejection {expected['rejected']!r}, got {got_reasons or got_readings}")
    elif "not_reading" in expected:
        if dict(result.not_readings) != {expected["not_reading"]: 1}:
            return fail(f"expected a {expected['not_reading']!r} message, got "
                        f"{dict(result.not_readings) or got_reasons or got_readings}")
    elif got_reasons:
        return fail(f"rejected: {got_reasons}")
    elif got_readings != expected.get("readings"):
        return fail(f"expected {json.dumps(expected.get('readings'))}", f"got      {json.dumps(got_readings)}")
    return CaseOutcome(case, ())
