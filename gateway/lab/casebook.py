"""Findings applied to incidents in memory, as `gateway.store.cases.apply_findings` applies them to the
case store: one open incident per cause (dedupe key), more occurrences of an open one, severities that
only rise, a resolution that closes the open one. Nothing is written anywhere."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.events import Finding

SEVERITY_ORDER = ("info", "minor", "major", "critical")


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


@dataclass(slots=True)
class WouldBeIncident:
    """An incident a rule opened (in a backtest, or in the store), with device-time opening and
    resolution."""

    rule_id: str
    subject: str
    service_code: str
    severity: str
    title: str
    opened_at: datetime
    resolved_at: datetime | None = None
    occurrences: int = 1
    device_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    # for the store's incidents: its id, and whether staff (not the rule) closed it
    incident_id: int | None = None
    closed_by_staff: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"{self.rule_id}:{self.subject}"

    @property
    def duration_s(self) -> float | None:
        return (self.resolved_at - self.opened_at).total_seconds() if self.resolved_at else None

    def as_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id, "subject": self.subject, "dedupe_key": self.dedupe_key,
            "service_code": self.service_code, "severity": self.severity, "title": self.title,
            "opened_at": self.opened_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "duration_s": self.duration_s, "occurrences": self.occurrences, "device_id": self.device_id,
            "lat": self.lat, "lon": self.lon,
            **({"incident_id": self.incident_id} if self.incident_id is not None else {}),
            **({"closed_by_staff": True} if self.closed_by_staff else {}),
        }


class CaseBook:
    """The incidents a run's findings make. `record_from` discards findings before a time (a warm-up
    whose incidents are still carried: one open at the start of the range is reported, as open before
    it)."""

    def __init__(self) -> None:
        self.incidents: list[WouldBeIncident] = []
        self._open: dict[str, WouldBeIncident] = {}
        self.findings = 0

    def apply(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.findings += 1
            key = finding.dedupe_key
            current = self._open.get(key)
            if finding.action == "open":
                if current is None:
                    incident = WouldBeIncident(
                        finding.rule_id, finding.subject, finding.service_code, finding.severity, finding.title,
                        finding.time, device_id=finding.device_id, lat=finding.lat, lon=finding.lon)
                    self._open[key] = incident
                    self.incidents.append(incident)
                else:
                    current.occurrences += 1
                    if _rank(finding.severity) > _rank(current.severity):
                        current.severity = finding.severity
            elif finding.action == "escalate":
                if current is not None and _rank(finding.severity) > _rank(current.severity):
                    current.severity = finding.severity
            elif finding.action == "resolve":
                if current is not None:
                    current.resolved_at = finding.time
                    del self._open[key]
            else:
                raise ValueError(f"unknown finding action {finding.action!r}")

    def still_open(self) -> list[WouldBeIncident]:
        return list(self._open.values())
