"""The collection service's key figures over a period, from the ledger: missed collections as a share of
those due, the share of misses put right (a lift of the same bin) by the end of the next working day, the
set-out rate per street (bins out when the truck called; a street of fewer than three households is not
shown: it would be one household's habit), kilograms per round. Overflow hours and the
forecast's error come from the case store and the forecasting rule's state (see `api/ledger.py`)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from gateway.ledger.keeping import Entry

_FROM_THE_NUMBER = re.compile(r"[\s,]+(?:n[º°o.]\s*)?\d.*$", re.IGNORECASE)
# A street's set-out rate is shown only over this many households: below, it would be one household's.
MIN_STREET_STOPS = 3


def street_of(address: str) -> str:
    """The street of an address: everything from its first house number on is cut (the door, the floor)."""
    return _FROM_THE_NUMBER.sub("", address).strip(" ,") or address


def collection_kpis(entries: Iterable[Entry], first: date, last: date,
                    is_working_day: Callable[[date], bool]) -> dict[str, Any]:
    """`entries`: the ledger of [first, last] and of the few days after (for the misses put right)."""
    entries = list(entries)
    lifts: dict[str, list[datetime]] = defaultdict(list)
    for entry in entries:
        if entry.facts.lift is not None:
            lifts[entry.stop.id].append(entry.facts.lift.at)
    judged = [e for e in entries if first <= e.facts.day <= last and e.status in ("lifted", "not_presented", "missed")]
    missed = [e for e in judged if e.status == "missed"]
    fixed = 0
    for entry in missed:
        deadline_day = entry.facts.day + timedelta(days=1)
        while not is_working_day(deadline_day) and deadline_day < entry.facts.day + timedelta(days=14):
            deadline_day += timedelta(days=1)
        _, window_end = entry.stop.window_on(entry.facts.day)
        deadline = datetime.combine(deadline_day + timedelta(days=1), time(0), entry.stop.tz)
        fixed += any(window_end < at < deadline for at in lifts[entry.stop.id])
    streets: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    street_stops: dict[str, set[str]] = defaultdict(set)
    kg: dict[str, float] = defaultdict(float)
    rounds_days: dict[str, set[date]] = defaultdict(set)
    for entry in judged:
        if entry.status in ("lifted", "not_presented"):
            street = street_of(entry.stop.address)
            counts = streets[street]
            counts[0] += entry.status == "lifted"
            counts[1] += 1
            street_stops[street].add(entry.stop.id)
        if entry.facts.lift is not None:
            kg[entry.stop.round] += entry.facts.lift.weight_kg or 0.0
            rounds_days[entry.stop.round].add(entry.facts.day)
    return {
        "due": len(judged), "lifted": sum(e.status == "lifted" for e in judged),
        "not_presented": sum(e.status == "not_presented" for e in judged), "missed": len(missed),
        "missed_share_of_due": round(len(missed) / len(judged), 4) if judged else None,
        "missed_fixed_within_one_working_day": round(fixed / len(missed), 4) if missed else None,
        "set_out_rate_by_street": {street: round(out / called, 4) for street, (out, called) in sorted(streets.items())
                                   if len(street_stops[street]) >= MIN_STREET_STOPS},
        "kg_by_round": {name: {"kg": round(total, 1), "days": len(rounds_days[name]),
                               "kg_per_round": round(total / len(rounds_days[name]), 1)}
                        for name, total in sorted(kg.items())},
    }
