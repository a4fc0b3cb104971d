"""Builders for rule tests: readings on a fake clock, rules from YAML-like dicts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import TypeAdapter

from gateway.devices import Device
from gateway.events import Finding, Reading
from gateway.rules import RuleConfig
from gateway.rules.model import Outcome, RuleBase, reading_context

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
_ADAPTER: TypeAdapter[Any] = TypeAdapter(RuleConfig)


def rule(zone_layers: Mapping[str, Any] | None = None, /, **config: Any) -> Any:
    config.setdefault("id", "r1")
    config.setdefault("incident", {"service_code": "x", "title": "t {device.name}"})
    return _ADAPTER.validate_python(config).build(zone_layers or {})


def reading(seconds: float, device_id: str = "D1", **fields: Any) -> Reading:
    time = T0 + timedelta(seconds=seconds)
    extra = fields.pop("extra", {})
    return Reading(device_id=device_id, time=time, received_at=time, message_key=b"k", profile="p",
                   extra=MappingProxyType(extra), **fields)


def device(device_id: str = "D1", kind: str = "container", **attributes: Any) -> Device:
    return Device(device_id, "p", kind, f"Dev {device_id}", attributes=MappingProxyType(attributes))


def run(rule_: RuleBase, readings: list[Reading], dev: Device | None = None,
        state: Mapping[str, Any] | None = None, batched: bool = False,
        ) -> tuple[list[Finding], Mapping[str, Any] | None]:
    """Feeds the readings in order, threading the state through, as the engine does (`batched`: after
    `prepare` with all of them, as the engine does with a batch)."""
    dev = dev or device()
    findings: list[Finding] = []
    if batched and rule_.prepares:
        rule_.prepare(readings)
    for r in readings:
        outcome: Outcome = rule_.evaluate(r, reading_context(r, dev), state, r.time)
        state = outcome.state
        findings.extend(outcome.findings)
    return findings, state


def actions(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.action, f.time.strftime("%H:%M:%S")) for f in findings]
