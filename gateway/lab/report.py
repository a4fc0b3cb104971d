"""What a backtest found, for people and for files: per rule, the incidents it would have opened and
resolved (count, per day, per subject, median duration, flapping); two runs compared (only in A, only in
B, in both with different times); the store's own incidents read for that comparison; JSON and CSV."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import psycopg

from gateway.lab.casebook import WouldBeIncident
from gateway.store.queries import query

# An incident opened again within this long after the same cause resolved counts as flapping.
FLAPPING_WITHIN = timedelta(hours=1)


def in_range(incidents: Iterable[WouldBeIncident], since: datetime, until: datetime) -> list[WouldBeIncident]:
    """Opened in [since, until), or opened before and still open at `since` (carried over a warm-up)."""
    return [i for i in incidents if since <= i.opened_at < until
            or (i.opened_at < since and (i.resolved_at is None or i.resolved_at >= since))]


@dataclass(frozen=True)
class RuleSummary:
    rule_id: str
    opened: int
    resolved: int
    still_open: int
    per_day: dict[str, int]
    per_subject: list[tuple[str, int]]  # the subjects with most incidents, most first
    median_duration_s: float | None
    flapping: int  # re-opened within FLAPPING_WITHIN of the same cause's resolution

    def as_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "opened": self.opened, "resolved": self.resolved,
                "still_open": self.still_open, "per_day": self.per_day,
                "per_subject": [{"subject": s, "incidents": n} for s, n in self.per_subject],
                "median_duration_s": self.median_duration_s, "flapping": self.flapping}


def summarize(incidents: Sequence[WouldBeIncident], rule_ids: Iterable[str], zone: tzinfo,
              top: int = 10) -> dict[str, RuleSummary]:
    """Per rule (every id given, with or without incidents); days are local days in `zone`."""
    by_rule: dict[str, list[WouldBeIncident]] = {rule_id: [] for rule_id in rule_ids}
    for incident in incidents:
        by_rule.setdefault(incident.rule_id, []).append(incident)
    summaries = {}
    for rule_id, its in by_rule.items():
        durations = [d for i in its if (d := i.duration_s) is not None]
        days = Counter(i.opened_at.astimezone(zone).date().isoformat() for i in its)
        subjects = Counter(i.subject for i in its)
        summaries[rule_id] = RuleSummary(
            rule_id, len(its), sum(i.resolved_at is not None for i in its),
            sum(i.resolved_at is None for i in its), dict(sorted(days.items())),
            sorted(subjects.items(), key=lambda item: (-item[1], item[0]))[:top],
            statistics.median(durations) if durations else None, _flapping(its))
    return summaries


def _flapping(incidents: Sequence[WouldBeIncident]) -> int:
    last_resolved: dict[str, datetime] = {}
    count = 0
    for incident in sorted(incidents, key=lambda i: i.opened_at):
        resolved = last_resolved.get(incident.dedupe_key)
        if resolved is not None and incident.opened_at - resolved <= FLAPPING_WITHIN:
            count += 1
        if incident.resolved_at is not None:
            last_resolved[incident.dedupe_key] = incident.resolved_at
    return count


@dataclass(frozen=True)
class Pair:
    """One cause's incident in A and/or B. `same`: both, with the same opening and resolution (for one
    staff closed in the store, the same opening)."""

    a: WouldBeIncident | None
    b: WouldBeIncident | None

    @property
    def status(self) -> str:
        if self.a is None:
            return "only_b"
        if self.b is None:
            return "only_a"
        if self.a.opened_at != self.b.opened_at:
            return "different"
        if self.a.closed_by_staff or self.b.closed_by_staff:
            return "same"
        return "same" if self.a.resolved_at == self.b.resolved_at else "different"

    @property
    def incident(self) -> WouldBeIncident:
        found = self.a or self.b
        assert found is not None
        return found


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    pairs: list[Pair] = field(default_factory=list)

    def of(self, status: str) -> list[Pair]:
        return [p for p in self.pairs if p.status == status]

    def counts(self) -> dict[str, int]:
        counted = Counter(p.status for p in self.pairs)
        return {status: counted.get(status, 0) for status in ("same", "different", "only_a", "only_b")}

    def per_rule(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter[str]] = {}
        for pair in self.pairs:
            table.setdefault(pair.incident.rule_id, Counter())[pair.status] += 1
        return {rule: {s: c.get(s, 0) for s in ("same", "different", "only_a", "only_b")}
                for rule, c in sorted(table.items())}

    @property
    def identical(self) -> bool:
        return all(p.status == "same" for p in self.pairs)

    def as_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "counts": self.counts(), "per_rule": self.per_rule(),
                "differences": [{"status": p.status, "a": p.a.as_json() if p.a else None,
                                 "b": p.b.as_json() if p.b else None} for p in self.pairs if p.status != "same"]}


def compare(a_name: str, a: Sequence[WouldBeIncident], b_name: str, b: Sequence[WouldBeIncident]) -> Comparison:
    """Pairs the incidents of each cause (dedupe key) in time order: an incident of A and one of B are the
    same case when their open periods overlap."""
    by_key: dict[str, tuple[list[WouldBeIncident], list[WouldBeIncident]]] = {}
    for incident in a:
        by_key.setdefault(incident.dedupe_key, ([], []))[0].append(incident)
    for incident in b:
        by_key.setdefault(incident.dedupe_key, ([], []))[1].append(incident)
    pairs: list[Pair] = []
    for from_a, from_b in by_key.values():
        from_a.sort(key=lambda i: i.opened_at)
        from_b.sort(key=lambda i: i.opened_at)
        i = j = 0
        while i < len(from_a) and j < len(from_b):
            x, y = from_a[i], from_b[j]
            if _overlap(x, y):
                pairs.append(Pair(x, y))
                i, j = i + 1, j + 1
            elif x.opened_at < y.opened_at:
                pairs.append(Pair(x, None))
                i += 1
            else:
                pairs.append(Pair(None, y))
                j += 1
        pairs += [Pair(x, None) for x in from_a[i:]] + [Pair(None, y) for y in from_b[j:]]
    pairs.sort(key=lambda p: (p.incident.opened_at, p.incident.dedupe_key))
    return Comparison(a_name, b_name, pairs)


def _overlap(x: WouldBeIncident, y: WouldBeIncident) -> bool:
    x_end = x.resolved_at or datetime.max.replace(tzinfo=x.opened_at.tzinfo)
    y_end = y.resolved_at or datetime.max.replace(tzinfo=y.opened_at.tzinfo)
    return x.opened_at <= y_end and y.opened_at <= x_end


def stored_incidents(conn: psycopg.Connection[Any], rule_ids: Iterable[str], since: datetime,
                     until: datetime) -> list[WouldBeIncident]:
    """The incidents the rules opened at the time, as the store holds them."""
    rows = conn.execute(query("rule_incidents_in_range"),
                        {"rule_ids": sorted(rule_ids), "since": since, "until": until}).fetchall()
    return [WouldBeIncident(rule_id, subject, code, severity, title, opened, resolved, occurrences, device_id,
                            lat, lon, incident_id=incident_id, closed_by_staff=bool(by_staff))
            for (incident_id, rule_id, subject, code, severity, title, opened, resolved, occurrences, device_id,
                 lat, lon, by_staff) in rows]


CSV_COLUMNS = ("set", "match", "rule_id", "subject", "dedupe_key", "service_code", "severity", "opened_at",
               "resolved_at", "duration_s", "occurrences", "device_id", "lat", "lon", "title", "incident_id")


def write_csv(path: Path, runs: Mapping[str, Sequence[WouldBeIncident]], comparisons: Sequence[Comparison]) -> int:
    """One row per incident of each run (`set` names the run); `match` is its status in the first
    comparison that includes it (same, different, only_a, only_b), empty without a comparison."""
    status: dict[int, str] = {}
    for comparison in comparisons:
        for pair in comparison.pairs:
            for incident in (pair.a, pair.b):
                if incident is not None:
                    status.setdefault(id(incident), pair.status)
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for name, incidents in runs.items():
            for incident in incidents:
                writer.writerow({"set": name, "match": status.get(id(incident), ""), **incident.as_json()})
                rows += 1
    return rows
