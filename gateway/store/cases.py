"""The case store, as the rules write to it: open (or repeat) and resolve device incidents, each change
appended to `incident_events`. The API's workflow (issue #5) writes to the same tables.

A device incident that opens takes in the open reports of its service already made near it (within
`correlation_distance_m`, made at most `correlation_window_s` before it opened): the other direction of
the link `create_report` makes for a report made after the incident opened. Reports with only an
`address_string` have no position and are not linked: there is no geocoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from gateway.events import Finding
from gateway.store.organisations import Assigner
from gateway.store.queries import query
from gateway.store.workflow import add_event, follow_linked_after_rule, record_routing

SEVERITY_ORDER = ("info", "minor", "major", "critical")
RULE_ACTOR = "rule"


@dataclass(frozen=True, slots=True)
class CaseChanges:
    opened: tuple[str, ...] = ()  # rule ids, one per incident opened
    repeated: int = 0
    resolved: tuple[str, ...] = ()


async def apply_findings(conn: AsyncConnection, findings: Sequence[Finding], *,
                         correlation_distance_m: float = 50.0, correlation_window_s: float = 86400,
                         assign: Assigner | None = None) -> CaseChanges:
    """Inside the caller's transaction, in the order the rules found them. The correlation bounds are the
    settings of the same names (these defaults are theirs). `assign` routes each incident opened (from the
    finding's time, with the rule's overrides): the assignment is in its history."""
    opened: list[str] = []
    resolved: list[str] = []
    repeated = 0
    async with conn.cursor() as cur:
        for finding in findings:
            if finding.action == "open":
                await cur.execute(query("open_device_incident"), {
                    "service_code": finding.service_code, "severity": finding.severity, "title": finding.title,
                    "description": finding.description, "rule_id": finding.rule_id, "device_id": finding.device_id,
                    "subject": finding.subject, "dedupe_key": finding.dedupe_key, "lat": finding.lat,
                    "lon": finding.lon, "address": finding.address, "time": finding.time,
                    "attributes": Jsonb(dict(finding.data)), "jurisdiction": finding.jurisdiction,
                })
                row = await cur.fetchone()
                assert row is not None
                incident_id, created, severity = row
                if created:
                    opened.append(finding.rule_id)
                else:
                    repeated += 1
                await _event(cur, incident_id, "created" if created else "occurrence", finding,
                             to_status="open" if created else None)
                if created and assign is not None:
                    assignment = assign(finding.service_code, finding.lat, finding.lon, finding.time,
                                        dict(finding.handling), finding.jurisdiction)
                    await record_routing(conn, incident_id, assignment, f"{RULE_ACTOR}:{finding.rule_id}")
                if created and finding.lat is not None and finding.lon is not None:
                    await _link_earlier_reports(conn, incident_id, finding, correlation_distance_m,
                                                timedelta(seconds=correlation_window_s))
                if not created and _rank(finding.severity) > _rank(severity):
                    await cur.execute(query("set_incident_severity"), {"id": incident_id, "severity": finding.severity})
                    await _event(cur, incident_id, "severity", finding, note=f"{severity} → {finding.severity}")
            elif finding.action == "escalate":
                await cur.execute(query("open_incident_for_cause"), {"dedupe_key": finding.dedupe_key})
                row = await cur.fetchone()
                if row is not None and _rank(finding.severity) > _rank(row[1]):
                    await cur.execute(query("set_incident_severity"), {"id": row[0], "severity": finding.severity})
                    await _event(cur, row[0], "severity", finding, note=f"{row[1]} → {finding.severity}")
            elif finding.action == "resolve":
                await cur.execute(query("resolve_device_incident"),
                                  {"dedupe_key": finding.dedupe_key, "time": finding.time})
                for incident_id, from_status in await cur.fetchall():
                    resolved.append(finding.rule_id)
                    await _event(cur, incident_id, "status", finding, from_status=from_status, to_status="resolved")
                    await follow_linked_after_rule(conn, incident_id, f"{RULE_ACTOR}:{finding.rule_id}")
            else:
                raise ValueError(f"unknown finding action {finding.action!r}")
    return CaseChanges(tuple(opened), repeated, tuple(resolved))


async def _link_earlier_reports(conn: AsyncConnection, incident_id: int, finding: Finding, distance_m: float,
                                window: timedelta) -> None:
    async with conn.cursor() as cur:
        await cur.execute(query("link_open_reports"), {
            "incident_id": incident_id, "service_code": finding.service_code, "lat": finding.lat,
            "lon": finding.lon, "since": finding.time - window, "distance_m": distance_m,
            "jurisdiction": finding.jurisdiction})
        reports = sorted(row[0] for row in await cur.fetchall())
    for report_id in reports:
        await add_event(conn, report_id, "link", "system", note=f"linked to incident {incident_id}",
                        data={"linked_to": incident_id})
        await add_event(conn, incident_id, "link", "system", note=f"citizen report {report_id} linked",
                        data={"report": report_id})


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


async def _event(cur: object, incident_id: int, kind: str, finding: Finding, *, from_status: str | None = None,
                 to_status: str | None = None, note: str = "") -> None:
    await cur.execute(query("insert_incident_event"), {  # type: ignore[attr-defined]
        "incident_id": incident_id, "kind": kind, "actor": f"{RULE_ACTOR}:{finding.rule_id}",
        "from_status": from_status, "to_status": to_status, "note": note or finding.description,
        "data": Jsonb({"time": finding.time.isoformat(), "severity": finding.severity, **finding.data}),
    })
