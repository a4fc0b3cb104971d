"""The ledger's fold on its own: what each truck reading tells of a stop's day, in any order, any number of
times, and how the status is read off the facts."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.ledger.book import Book, Facts, Stop, TruckReading, merge_into

MADRID = ZoneInfo("Europe/Madrid")
MONDAY = date(2026, 3, 2)


def stop(stop_id: str, tag: str, lat: float, lon: float, days: tuple[str, ...] = ("mon",)) -> Stop:
    return Stop(stop_id, tag, "household", f"Carrer {stop_id}", lat, lon, "Eixample", "Eixample", days,
                (time(6), time(9)), MADRID, timedelta(minutes=30))


def at(hour: int, minute: int, day: date = MONDAY) -> datetime:
    return datetime.combine(day, time(hour, minute), MADRID).astimezone(UTC)


BOOK = Book((stop("A", "TAG-A", 41.4000, 2.1700), stop("B", "TAG-B", 41.3950, 2.1650),
             stop("C", "TAG-C", 41.3900, 2.1600), stop("D", "TAG-D", 41.3850, 2.1550)), pass_m=30)
READINGS = [
    TruckReading("T1", at(7, 40), 41.40005, 2.17005),  # passes A (within 30 m)
    TruckReading("T1", at(7, 42), 41.40001, 2.17001, "TAG-A", "bin_lift", 11.0),
    TruckReading("T2", at(7, 41), 41.40002, 2.17002, "TAG-A", "bin_lift", 9.0),  # an earlier lift, by T2
    TruckReading("T1", at(7, 50), 41.39501, 2.16501),  # passes B, lifts nothing
    TruckReading("T1", at(8, 5), 41.3890, 2.1610, "TAG-C", "bin_not_out"),  # the driver's button for C
    TruckReading("T1", at(9, 45), 41.38501, 2.15501),  # near D, but after its window
    TruckReading("T1", at(10, 0, MONDAY + timedelta(days=1)), 41.40001, 2.17001, "TAG-A", "bin_lift", 5.0),  # Tuesday
    TruckReading("T1", at(7, 0), 41.45, 2.20, "TAG-UNKNOWN", "bin_lift", 3.0),  # a tag no stop has
]


def test_each_reading_tells_its_fact_and_the_status_follows() -> None:
    facts = BOOK.fold(READINGS)
    now = at(12, 0)
    a = facts[("A", MONDAY)]
    assert a.lift is not None and (a.lift.at, a.lift.truck, a.lift.weight_kg) == (at(7, 41), "T2", 9.0)
    assert a.passed is not None and a.passed.at == at(7, 40)
    assert a.status_at(BOOK.by_id["A"], now) == "lifted"
    assert facts[("B", MONDAY)].status_at(BOOK.by_id["B"], now) == "not_presented"
    # before the window has ended, a truck that went by may still come back for it
    assert facts[("B", MONDAY)].status_at(BOOK.by_id["B"], at(8, 0)) == "pending"
    assert facts[("C", MONDAY)].status_at(BOOK.by_id["C"], at(8, 10)) == "not_presented"  # the driver said so
    c = facts[("C", MONDAY)]
    assert c.not_out is not None and c.not_out.at == at(8, 5) and c.status_at(BOOK.by_id["C"], now) == "not_presented"
    assert ("D", MONDAY) not in facts  # after the window: the truck did not pass it on its collection
    tuesday = facts[("A", MONDAY + timedelta(days=1))]
    assert not tuesday.scheduled and tuesday.status_at(BOOK.by_id["A"], now) == "extra"
    assert len(facts) == 4


def test_missed_only_after_the_window_and_its_grace() -> None:
    empty = BOOK.fold([]).get(("D", MONDAY))
    assert empty is None
    d = Facts("D", MONDAY, True)
    assert d.status_at(BOOK.by_id["D"], at(9, 20)) == "pending"
    assert d.status_at(BOOK.by_id["D"], at(9, 30)) == "missed"


def test_any_order_and_any_repetition_give_the_same_facts() -> None:
    expected = BOOK.fold(READINGS)
    rng = random.Random(4)
    for _ in range(20):
        shuffled = READINGS * 2
        rng.shuffle(shuffled)
        known: dict[tuple[str, date], Facts] = {}
        cut = rng.randrange(1, len(shuffled))
        merge_into(known, BOOK.fold(shuffled[:cut]))
        changed = merge_into(known, BOOK.fold(shuffled[cut:]))
        assert known == expected
        assert not merge_into(known, BOOK.fold(shuffled))  # everything again changes nothing
        assert changed <= set(expected)
