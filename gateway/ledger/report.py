"""The ledger as people read it: rows (JSON, CSV), filtered by round, district or truck, and the coverage of
each round (the share of its due stops the trucks called at, hour by hour)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.ledger.keeping import Entry

CSV_COLUMNS = ("day", "round", "district", "kind", "stop_id", "address", "status", "lifted_at", "truck", "weight_kg",
               "lift_lat", "lift_lon", "passed_at", "not_out_at")


def _local(at: datetime | None, entry: Entry) -> str:
    return at.astimezone(entry.stop.tz).isoformat(timespec="seconds") if at else ""


def row(entry: Entry) -> dict[str, Any]:
    facts, stop = entry.facts, entry.stop
    lift = facts.lift
    called = lift or facts.passed or facts.not_out
    return {"day": facts.day.isoformat(), "round": stop.round, "district": stop.district, "kind": stop.kind,
            "stop_id": stop.id, "address": stop.address, "status": entry.status,
            "lifted_at": _local(lift.at if lift else None, entry),
            "truck": called.truck if called else "",
            "weight_kg": lift.weight_kg if lift and lift.weight_kg is not None else "",
            "lift_lat": lift.lat if lift and lift.lat is not None else "",
            "lift_lon": lift.lon if lift and lift.lon is not None else "",
            "passed_at": _local(facts.passed.at if facts.passed else None, entry),
            "not_out_at": _local(facts.not_out.at if facts.not_out else None, entry)}


def select(entries: Iterable[Entry], round_: str | None = None, district: str | None = None,
           truck: str | None = None) -> list[Entry]:
    def trucks(entry: Entry) -> set[str]:
        return {seen.truck for seen in (entry.facts.lift, entry.facts.passed, entry.facts.not_out) if seen}

    return [e for e in entries if (round_ is None or e.stop.round == round_)
            and (district is None or e.stop.district == district) and (truck is None or truck in trucks(e))]


def to_csv(entries: Sequence[Entry]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow(row(entry))
    return out.getvalue()


def served_at(entry: Entry) -> datetime | None:
    """When the truck called: the lift, else the pass or the driver's "not out"."""
    times = [s.at for s in (entry.facts.lift, entry.facts.passed, entry.facts.not_out) if s is not None]
    return min(times) if times else None


def coverage(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """Per day and round: stops due, how many of each status, the share served, and the share served by
    each hour of the window (local time)."""
    groups: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.status != "extra":
            groups[(entry.facts.day.isoformat(), entry.stop.round)].append(entry)
    found = []
    for (day, round_), due in sorted(groups.items()):
        counts = {status: sum(1 for e in due if e.status == status)
                  for status in ("lifted", "not_presented", "missed", "pending")}
        served = [t for e in due if (t := served_at(e)) is not None]
        start = min(e.stop.window_on(e.facts.day)[0] for e in due)
        end = max(e.stop.window_on(e.facts.day)[1] for e in due)
        by_hour = []
        at = start.replace(minute=0) + timedelta(hours=1)
        while at <= end + timedelta(hours=1):
            by_hour.append({"by": at.strftime("%H:%M"), "share": round(sum(1 for t in served if t < at) / len(due), 4)})
            at += timedelta(hours=1)
        found.append({"day": day, "round": round_, "due": len(due), **counts,
                      "kg": round(sum(e.facts.lift.weight_kg or 0 for e in due if e.facts.lift), 1),
                      "served_share": round(len(served) / len(due), 4), "by_hour": by_hour})
    return found
