"""The rule lab's parts without a database: the case book applies findings as the store does, the replay
sweeps at device-time multiples, summaries count flapping, comparisons pair by cause and period, ranges
and rule files are refused with a reason."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.devices import Device, DeviceDirectory
from gateway.events import Finding, Reading
from gateway.lab.backtest import (
    Backtest,
    BacktestError,
    check_rule_text,
    focus,
    load_rule_text,
    read_start_states,
    replay,
)
from gateway.lab.casebook import CaseBook, WouldBeIncident
from gateway.lab.cli import history_range
from gateway.lab.report import compare, in_range, summarize
from gateway.rules.loader import load_rules
from tests.support import REPO

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def finding(action: str, minutes: float, subject: str = "C-1", severity: str = "minor") -> Finding:
    return Finding("container-full", subject, action, T0 + timedelta(minutes=minutes), "container_full", severity)


def test_the_case_book_opens_once_per_cause_counts_repeats_raises_severity_and_resolves() -> None:
    book = CaseBook()
    book.apply([finding("open", 0), finding("open", 5), finding("escalate", 6, severity="major"),
                finding("open", 7, severity="minor"), finding("resolve", 10), finding("resolve", 11),
                finding("open", 20)])
    first, second = book.incidents
    assert (first.opened_at, first.resolved_at, first.occurrences, first.severity) == (
        T0, T0 + timedelta(minutes=10), 3, "major")
    assert second.opened_at == T0 + timedelta(minutes=20) and second.resolved_at is None
    assert book.still_open() == [second]


def incident(opened: float, resolved: float | None, subject: str = "C-1") -> WouldBeIncident:
    return WouldBeIncident("container-full", subject, "container_full", "minor", "t", T0 + timedelta(minutes=opened),
                           T0 + timedelta(minutes=resolved) if resolved is not None else None)


def test_summaries_count_per_day_per_subject_median_and_flapping() -> None:
    incidents = [incident(0, 10), incident(40, 50), incident(200, None), incident(0, 30, "C-2"),
                 incident(60 * 24, 60 * 24 + 5, "C-2")]
    summary = summarize(incidents, ["container-full", "quiet-rule"], ZoneInfo("Europe/Madrid"))
    full = summary["container-full"]
    assert (full.opened, full.resolved, full.still_open) == (5, 4, 1)
    assert full.per_day == {"2026-11-02": 4, "2026-11-03": 1}
    assert full.per_subject[0] == ("C-1", 3)
    assert full.median_duration_s == 600  # 10, 10, 30 and 5 minutes
    assert full.flapping == 1  # reopened 30 minutes after a resolution; 150 minutes is not flapping
    assert summary["quiet-rule"].opened == 0


def test_a_comparison_pairs_incidents_of_a_cause_whose_periods_overlap() -> None:
    a = [incident(0, 10), incident(30, 40), incident(100, None), incident(0, 5, "C-9")]
    b = [incident(0, 10), incident(35, 45), incident(60, 70), incident(100, None)]
    comparison = compare("a", a, "b", b)
    assert comparison.counts() == {"same": 2, "different": 1, "only_a": 1, "only_b": 1}
    assert [p.incident.subject for p in comparison.of("only_a")] == ["C-9"]
    assert comparison.of("only_b")[0].incident.opened_at == T0 + timedelta(minutes=60)
    assert not comparison.identical and compare("a", a, "a", a).identical


def test_the_range_keeps_incidents_still_open_at_its_start() -> None:
    kept = in_range([incident(-60, -30), incident(-60, 5), incident(-60, None), incident(10, None),
                     incident(70, None)], T0, T0 + timedelta(hours=1))
    assert [(i.opened_at - T0).total_seconds() / 60 for i in kept] == [-60, -60, 10]


def test_the_replay_sweeps_at_each_multiple_of_the_interval_on_device_time() -> None:
    rules = load_rules(REPO / "rules")
    silent = focus(rules, "sensor-silent")
    device = Device("C-1", "container", "container", "C-1", 41.39, 2.16)
    run = Backtest("rules", silent, DeviceDirectory([device]), {"container": 600.0})
    readings = [Reading("C-1", T0 + timedelta(minutes=m), T0, b"k%d" % m, "container", fill_pct=10.0)
                for m in (0, 10, 20, 150)]
    stats = replay(readings, [run], T0, T0 + timedelta(hours=3), timedelta(minutes=1))
    assert stats.readings == 4 and stats.sweeps == 180
    (opened,) = run.incidents
    # silent from 00:20 on; three missed 10-minute reports later (the third half an interval overdue), at
    # 00:55, it opens (not at a sweep's time)
    assert opened.opened_at == T0 + timedelta(minutes=55)
    assert opened.resolved_at == T0 + timedelta(minutes=150)


def test_ranges_are_checked() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert history_range(None, None, "1d", None, now) == (now - timedelta(days=1), now)
    ahead = now + timedelta(hours=2)  # a simulated city's clock ahead of the wall clock
    assert history_range(None, None, "1h", ahead, now)[1] == ahead + timedelta(microseconds=1)
    assert history_range("2026-11-30", "2026-12-01", None, None, now)[0] == datetime(2026, 11, 30, tzinfo=UTC)
    refused: list[tuple[str | None, str | None, str | None, str]] = [
        (None, None, None, "give a range"), ("2026-12-02", "2026-12-01", None, "empty range"),
        ("yesterday", None, None, "not a date"), (None, None, "soon", "not a duration"),
        ("2026-11-01", None, "1d", "not both")]
    for since, until, last, message in refused:
        with pytest.raises(BacktestError, match=message):
            history_range(since, until, last, None, now)


def test_a_rule_file_given_as_text_is_checked_as_rules_check_does(tmp_path: Path) -> None:
    text = (REPO / "rules" / "containers.yaml").read_text()
    assert check_rule_text(text, "containers.yaml", REPO / "rules", None) == []
    broken = text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >=")
    problems = check_rule_text(broken, "containers.yaml", REPO / "rules", None)
    line = next(n for n, row in enumerate(broken.splitlines(), 1) if "condition: fill_pct >=" in row)
    assert problems and problems[0].startswith(f"containers.yaml:{line}: rule container-full"), problems
    replaced = load_rule_text(text.replace("fill_pct >= 80.0", "fill_pct >= 90.0"), "containers.yaml",
                              REPO / "rules", None, replacing="containers.yaml")
    assert len(replaced.rules) == len(load_rules(REPO / "rules").rules)
    with pytest.raises(BacktestError, match=r"no rule 'nope'.*container-full"):
        load_rule_text(text, "containers.yaml", REPO / "rules", None, "nope")


def test_a_given_starting_state_is_where_the_rules_resume(tmp_path: Path) -> None:
    full = focus(load_rules(REPO / "rules"), "container-full")
    device = Device("C-1", "container", "container", "C-1", 41.39, 2.16)
    readings = [Reading("C-1", T0 + timedelta(minutes=m), T0, b"k%d" % m, "container", fill_pct=90.0)
                for m in range(0, 40, 10)]

    def opened(states: list[tuple[str, str, Mapping[str, Any]]]) -> int:
        run = Backtest("rules", full, DeviceDirectory([device]), {"container": 600.0}, states)
        replay(readings, [run], T0, T0 + timedelta(hours=1), timedelta(minutes=1))
        return len(run.incidents)

    assert opened([]) == 1
    path = tmp_path / "states.json"
    path.write_text(json.dumps([{"rule_id": "container-full", "subject": "C-1",
                                 "state": {"v": 1, "s": {"active": True, "severity": "minor"}}}]))
    assert opened(read_start_states(path)) == 0  # already open at the start: not opened again
    path.write_text("[{\"rule\": 1}]")
    with pytest.raises(BacktestError, match="not a list of"):
        read_start_states(path)


def test_a_rule_text_cannot_read_files_outside_the_rules() -> None:
    text = (REPO / "rules" / "collection.yaml").read_text()
    for elsewhere in ("/etc/passwd", "../services.yaml", "data/../../services.yaml"):
        problems = check_rule_text(text.replace("data/households.yaml", elsewhere), "collection.yaml",
                                   REPO / "rules", None)
        assert problems and "inside the rules directory" in problems[0], problems


def test_hostile_rule_texts_are_refused_with_a_reason_not_a_crash() -> None:
    """Found in review: an alias bomb exhausted memory; a bad tag and deep nesting raised."""
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9))
    cases = {
        "rules:\n" + "".join("  " + line + "\n" for line in laughs.splitlines()): "aliases",
        'rules:\n  - !!timestamp "nope"\n': "rules.yaml:2",
        "rules: " + "[" * 5000: "rules.yaml",
        "rules:\n  - !!python/object:os.system {}\n": "rules.yaml",
    }
    for text, expected in cases.items():
        problems = check_rule_text(text, "rules.yaml", REPO / "rules", None)
        assert problems and expected in problems[0], (text[:40], problems)


def test_a_range_too_long_for_dates_is_refused() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    for last in ("99999999999d", "9999999d"):
        with pytest.raises(BacktestError):
            history_range(None, None, last, None, now)


def test_the_store_comparison_counts_what_opened_within_the_range() -> None:
    """Found in review: an incident open at the range's end, resolved later in the store, showed as
    different; one opened before the range, as only in the store."""
    from gateway.lab.backtest import _opened_within

    until = T0 + timedelta(hours=1)
    stored = [incident(-30, None), incident(10, 90), incident(20, 30)]
    within = _opened_within(stored, T0, until)
    assert [(i.opened_at, i.resolved_at) for i in within] == [
        (T0 + timedelta(minutes=10), None), (T0 + timedelta(minutes=20), T0 + timedelta(minutes=30))]
    assert compare("a", [incident(10, None), incident(20, 30)], "store", within).identical


def test_two_runs_of_the_same_rules_are_told_apart() -> None:
    from gateway.lab.cli import run_names

    assert run_names("rules", "rules") == ("A: rules", "B: rules")
    assert run_names("store", "other") == ("A: store", "B: other")
    assert run_names("rules", "other") == ("rules", "other")
