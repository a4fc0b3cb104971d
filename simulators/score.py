"""Ground truth against the case store: precision, recall, and what was missed or extra."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from simulators.city import Expected

# The city's hour has no truth for forecasts (its containers' fill is capped well below full): a long demo
# run's "will overflow" warnings are neither hits nor extras. bench/forecast.py scores them on the month.
UNSCORED = frozenset({"container_overflow_forecast"})


@dataclass(frozen=True)
class Score:
    expected: int
    found: int
    matched: int
    misses: tuple[Expected, ...]
    extras: tuple[tuple[str, str], ...]

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.expected if self.expected else 1.0


def describe(result: Score) -> list[str]:
    """The score as lines for a person: the figures, then each miss and each extra."""
    lines = [f"precision {result.precision:.2f}, recall {result.recall:.2f} "
             f"({result.matched} of {result.expected} expected, {result.found} found)"]
    lines += [f"  missed: {m.service_code} {m.subject} ({m.what})" for m in result.misses]
    lines += [f"  extra:  {code} {subject}" for code, subject in result.extras]
    return lines


def score(database_url: str, expected: Iterable[Expected]) -> Score:
    """Device incidents (the ones rules opened) matched to the truth by service code and subject."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT service_code, subject FROM incidents WHERE source = 'device_rule'").fetchall()
    found = {(code, subject) for code, subject in rows if code not in UNSCORED}
    truth = list(expected)
    wanted = {(e.service_code, e.subject) for e in truth}
    misses = tuple(e for e in truth if (e.service_code, e.subject) not in found)
    extras = tuple(sorted(found - wanted))
    return Score(len(wanted), len(found), len(found & wanted), misses, extras)
