"""The collection figures read off ledger entries."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.ledger.book import Facts, Seen, Stop
from gateway.ledger.keeping import Entry
from gateway.ledger.kpis import collection_kpis, street_of

MADRID = ZoneInfo("Europe/Madrid")
FRIDAY = date(2026, 3, 6)


def stop(stop_id: str, address: str) -> Stop:
    return Stop(stop_id, f"TAG-{stop_id}", "household", address, 41.4, 2.17, "Eixample", "Eixample-1",
                ("fri",), (time(6), time(9)), MADRID, timedelta(minutes=30))


def entry(s: Stop, day: date, lift_hour: int | None = None, passed: bool = False, kg: float = 10.0,
          scheduled: bool = True) -> Entry:
    at = datetime.combine(day, time(lift_hour if lift_hour is not None else 7), MADRID).astimezone(UTC)
    facts = Facts(s.id, day, scheduled, Seen(at, "T1", 41.4, 2.17, kg) if lift_hour is not None else None,
                  Seen(at, "T1") if passed else None)
    return Entry(s, facts, facts.status_at(s, datetime(2026, 3, 20, tzinfo=UTC)))


def test_streets_are_cut_at_the_first_number_and_shown_from_three_households() -> None:
    assert street_of("Carrer de Mallorca, 401, 2n 1a") == street_of("Carrer de Mallorca 17 bis") == "Carrer de Mallorca"
    mallorca = [stop(f"M{i}", f"Carrer de Mallorca {i}, baixos") for i in range(3)]
    alone = stop("V1", "Carrer de València 310")
    found = [entry(mallorca[0], FRIDAY, 7), entry(mallorca[1], FRIDAY, 8), entry(mallorca[2], FRIDAY, passed=True),
             entry(alone, FRIDAY, passed=True)]
    kpis = collection_kpis(found, FRIDAY, FRIDAY, lambda d: d.weekday() < 5)
    assert kpis["set_out_rate_by_street"] == {"Carrer de Mallorca": round(2 / 3, 4)}
    assert kpis["kg_by_round"] == {"Eixample-1": {"kg": 20.0, "days": 1, "kg_per_round": 20.0}}
    assert (kpis["due"], kpis["lifted"], kpis["not_presented"], kpis["missed"]) == (4, 2, 2, 0)


def test_a_miss_is_put_right_by_a_lift_before_the_end_of_the_next_working_day() -> None:
    early, late = stop("A", "Carrer A 1"), stop("B", "Carrer B 1")
    monday = FRIDAY + timedelta(days=3)  # the next working day after Friday
    found = [entry(early, FRIDAY), entry(late, FRIDAY),
             entry(early, monday, 18, scheduled=False),  # Monday evening, off schedule: in time
             entry(late, monday + timedelta(days=1), 8, scheduled=False)]  # Tuesday: too late
    kpis = collection_kpis(found, FRIDAY, FRIDAY, lambda d: d.weekday() < 5)
    assert kpis["missed"] == 2 and kpis["missed_share_of_due"] == 1.0
    assert kpis["missed_fixed_within_one_working_day"] == 0.5
