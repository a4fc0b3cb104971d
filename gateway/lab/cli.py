"""`wastegate rules backtest`: what rules would have opened on the stored history, printed per rule, with
a comparison with another rule set and with the store, as JSON or CSV, or a stretch saved as a test case."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gateway.devices import DeviceDirectory
from gateway.lab.backtest import (
    STORE,
    BacktestError,
    BacktestPlan,
    BacktestReport,
    RuleSource,
    capture_readings,
    read_start_states,
    reading_connection,
    run_plan,
)
from gateway.lab.report import Comparison, write_csv
from gateway.rules.durations import parse_duration
from gateway.settings import Settings
from gateway.sources.replay import CaptureError, HistoryFilter
from gateway.store.devices import devices_by_id
from gateway.store.queries import query

DIFFERENCES_SHOWN = 20


def parse_time(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BacktestError(f"{option}: not a date or time: {value!r} (write e.g. 2026-11-30 or "
                            "2026-11-30T08:00+01:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def history_range(since: str | None, until: str | None, last: str | None,
                  latest_stored: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """`--last D` ends now, or at the latest stored reading when that is later (a simulated city's clock
    may run ahead); `--since` alone runs to the same end."""
    if last is not None and since is not None:
        raise BacktestError("give --last, or --since (and --until), not both")
    end = parse_time(until, "--until") if until else max(now, latest_stored + timedelta(microseconds=1)) \
        if latest_stored else now
    if last is not None:
        try:
            length = parse_duration(last)
        except ValueError as exc:
            raise BacktestError(f"--last: {exc}") from None
        if length <= timedelta(0):
            raise BacktestError("--last must be a positive duration")
        try:
            return end - length, end
        except OverflowError:
            raise BacktestError(f"--last {last}: reaches before the year 1") from None
    if since is None:
        raise BacktestError("give a range: --last 1d, or --since 2026-11-01 [--until 2026-11-30]")
    start = parse_time(since, "--since")
    if start >= end:
        raise BacktestError(f"empty range: --since {start.isoformat()} is not before {end.isoformat()}")
    return start, end


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        west, south, east, north = (float(part) for part in value.split(","))
    except ValueError:
        raise BacktestError("--bbox is west,south,east,north in degrees, e.g. 2.15,41.38,2.18,41.40") from None
    return west, south, east, north


def backtest_command(
    since: Annotated[str | None, typer.Option(help="start (ISO 8601; UTC unless an offset is given)")] = None,
    until: Annotated[str | None, typer.Option(help="end, excluded (default: now)")] = None,
    last: Annotated[str | None, typer.Option(help="the range ending now, e.g. 1d, 30d, 6h")] = None,
    rules: Annotated[Path | None, typer.Option(help="rules directory or file (default: the deployed rules)")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="only this rule")] = None,
    compare_with: Annotated[Path | None, typer.Option("--compare", help="another rules directory or file to "
                                                      "run on the same history")] = None,
    store: Annotated[bool | None, typer.Option("--store/--no-store", help="compare with the incidents the store "
                                               "holds (default: when the rules are the deployed ones)")] = None,
    devices: Annotated[str | None, typer.Option(help="only these devices (comma-separated)")] = None,
    kinds: Annotated[str | None, typer.Option(help="only devices of these kinds (comma-separated)")] = None,
    bbox: Annotated[str | None, typer.Option(help="only devices in or through west,south,east,north")] = None,
    capture: Annotated[Path | None, typer.Option(help="replay a JSONL capture instead of stored telemetry")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="write the incidents and figures as JSON")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="write one row per incident as CSV")] = None,
    database_url: Annotated[str | None, typer.Option(help="read from this database (e.g. a read replica)")] = None,
    sweep_every: Annotated[str | None, typer.Option(help="sweep interval (default: WASTEGATE_SWEEP_S)")] = None,
    warmup: Annotated[str, typer.Option(help="replay this long before the range first, so durations and "
                                         "states are under way at its start")] = "0s",
    timezone: Annotated[str, typer.Option(help="time zone of the per-day counts")] = "UTC",
    save_case: Annotated[str | None, typer.Option(help="write a rules/tests case NAME from history "
                                                  "(with --device and --around)")] = None,
    device: Annotated[str | None, typer.Option(help="--save-case: the device")] = None,
    around: Annotated[str | None, typer.Option(help="--save-case: the time of the event")] = None,
    window: Annotated[str, typer.Option(help="--save-case: readings this long before and after")] = "1h",
    workers: Annotated[int, typer.Option(help="processes to replay in (the devices split between them)")] = min(
        2, os.cpu_count() or 1),
    start_state: Annotated[Path | None, typer.Option(help="start from these rule states (JSON list of rule_id, "
                                                     "subject, state) instead of a fresh state")] = None,
) -> None:
    """What the rules would have opened and resolved over a stretch of the stored history, without writing
    anything: per rule, the incidents (count, per day, per subject, median duration, flapping); with
    --compare, the difference between two rule sets; against the deployed rules, the difference with what
    the store holds. Exit 2 on a bad request, 1 when a comparison with the store differs."""
    settings = Settings()
    screen = Console(stderr=True)
    try:
        code = _backtest(settings, screen, since=since, until=until, last=last, rules=rules, rule=rule,
                         compare_with=compare_with, store=store, devices=devices, kinds=kinds, bbox=bbox,
                         capture=capture, json_file=json_file, csv_file=csv_file,
                         database_url=database_url or settings.database_url, sweep_every=sweep_every,
                         warmup=warmup, timezone=timezone, save_case=save_case, device=device, around=around,
                         window=window, workers=workers, start_state=start_state)
    except (BacktestError, CaptureError) as exc:  # a capture line that is not a message names its file:line
        screen.print(f"[red]backtest:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except psycopg.OperationalError as exc:
        screen.print(f"[red]backtest:[/red] cannot read the database: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _backtest(settings: Settings, screen: Console, *, since: str | None, until: str | None, last: str | None,
              rules: Path | None, rule: str | None, compare_with: Path | None, store: bool | None,
              devices: str | None, kinds: str | None, bbox: str | None, capture: Path | None,
              json_file: Path | None, csv_file: Path | None, database_url: str, sweep_every: str | None,
              warmup: str, timezone: str, save_case: str | None, device: str | None, around: str | None,
              window: str, workers: int, start_state: Path | None) -> int:
    from gateway.catalogue import CatalogueError, load_service_codes
    from gateway.profiles.loader import ProfileError, load_profiles

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BacktestError(f"--timezone: unknown time zone {timezone!r}") from None
    try:
        codes = load_service_codes(settings.services_file)
        profiles = load_profiles(settings.profiles_dir)
    except (CatalogueError, ProfileError) as exc:
        raise BacktestError(str(exc)) from None
    intervals = {p.name: p.config.defaults.expected_interval_s for p in profiles.profiles}
    try:
        sweep = parse_duration(sweep_every) if sweep_every else timedelta(seconds=settings.sweep_s)
        warm = parse_duration(warmup)
        case_window = parse_duration(window)
    except ValueError as exc:
        raise BacktestError(str(exc)) from None
    source = RuleSource(settings.rules_dir, rules, rule_id=rule, service_codes=codes)
    rule_set = source.load()  # refused here, before reading anything, with file:line: reason
    if save_case is not None:
        if device is None or around is None:
            raise BacktestError("--save-case needs --device and --around")
        from gateway.lab.cases import save_cases

        with reading_connection(database_url) as conn:
            written = save_cases(conn, rule_set, rules if rules and rules.is_dir() else settings.rules_dir,
                                 save_case, device, parse_time(around, "--around"), case_window, rule, intervals,
                                 sweep)
        for path, found in written:
            screen.print(f"wrote {path}: {found} findings expected; it passes against the rules", highlight=False,
                         soft_wrap=True)
        return 0
    other = RuleSource(settings.rules_dir, compare_with, rule_id=rule, service_codes=codes) \
        if compare_with is not None else None
    if other is not None:
        other.load()
    with reading_connection(database_url) as conn:
        latest = conn.execute(query("latest_telemetry_time")).fetchone()
        start, end = history_range(since, until, last, latest[0] if latest else None, datetime.now(UTC))
        history = HistoryFilter(start, end, _split(devices), _split(kinds), _bbox(bbox))
        rules_name, compare_name = run_names(str(rules or settings.rules_dir), str(compare_with))
        plan = BacktestPlan(
            history, source, rules_name=rules_name, compare=other,
            compare_name=compare_name, with_store=source.is_deployed if store is None else store,
            sweep_every=sweep, warmup=warm, zone=zone, workers=max(1, workers),
            start_states=read_start_states(start_state) if start_state else ())
        readings = capture_readings(capture, profiles, _registry(conn)) if capture is not None else None
    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.fields[reached]}"),
                  TextColumn("{task.fields[readings]:,} readings"), TimeRemainingColumn(),
                  console=screen, transient=True) as bar:
        total = (end - start + warm).total_seconds()
        task = bar.add_task("replay", total=total, reached="", readings=0)

        def progress(reached: datetime, replayed: int) -> None:
            bar.update(task, completed=(reached - start + warm).total_seconds(), readings=replayed,
                       reached=reached.astimezone(zone).strftime("%Y-%m-%d %H:%M"))

        report = run_plan(database_url, plan, intervals, progress, readings)
    out = Console()
    print_report(out, report)
    if json_file is not None:
        json_file.write_text(json.dumps(report.as_json(), indent=2, ensure_ascii=False), encoding="utf-8")
        screen.print(f"wrote {json_file}", highlight=False, soft_wrap=True)
    if csv_file is not None:
        rows = write_csv(csv_file, report.runs, report.comparisons)
        screen.print(f"wrote {csv_file} ({rows} incidents)", highlight=False, soft_wrap=True)
    with_store = [c for c in report.comparisons if c.b == STORE]
    return 1 if with_store and not with_store[0].identical else 0


def run_names(a: str, b: str) -> tuple[str, str]:
    """The two runs' names as the report shows them: their paths, told apart from each other and from
    the store's incidents."""
    if a == b or STORE in (a, b):
        return f"A: {a}", f"B: {b}"
    return a, b


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip()) if value else ()


def _registry(conn: psycopg.Connection[Any]) -> DeviceDirectory:
    return DeviceDirectory(devices_by_id(conn))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def print_report(out: Console, report: BacktestReport) -> None:
    stats = report.stats
    out.print(f"{stats.readings:,} readings from {report.since.isoformat()} to {report.until.isoformat()}, "
              f"{stats.sweeps:,} sweeps, in {stats.elapsed_s:.1f} s ({stats.rate:,.0f} readings/s)", highlight=False,
              soft_wrap=True)
    for name, summaries in report.summaries.items():
        table = Table(title=f"would-be incidents: {name}" if name != STORE else "incidents the store holds",
                      title_justify="left")
        table.add_column("rule", no_wrap=True)
        for column in ("opened", "resolved", "open at end", "median duration", "flapping"):
            table.add_column(column, justify="right")
        table.add_column("most", overflow="fold")
        for rule_id, summary in summaries.items():
            most = ", ".join(f"{subject} ({n})" for subject, n in summary.per_subject[:3])
            table.add_row(rule_id, str(summary.opened), str(summary.resolved), str(summary.still_open),
                          _duration(summary.median_duration_s), str(summary.flapping), most)
        out.print(table)
        days = sorted({day for s in summaries.values() for day in s.per_day})
        if 1 < len(days) <= 14:
            per_day = Table(title=f"opened per day: {name}", title_justify="left")
            per_day.add_column("rule")
            for day in days:
                per_day.add_column(day[5:], justify="right")
            for rule_id, summary in summaries.items():
                if summary.opened:
                    per_day.add_row(rule_id, *(str(summary.per_day.get(day, 0)) for day in days))
            out.print(per_day)
    for comparison in report.comparisons:
        print_comparison(out, comparison)


def print_comparison(out: Console, comparison: Comparison) -> None:
    b = "the store" if comparison.b == STORE else comparison.b
    table = Table(title=f"{comparison.a} (A) against {b} (B)", title_justify="left")
    table.add_column("rule", no_wrap=True)
    for column in ("same", "different times", "only in A", "only in B"):
        table.add_column(column, justify="right")
    for rule_id, counts in comparison.per_rule().items():
        table.add_row(rule_id, *(str(counts[s]) for s in ("same", "different", "only_a", "only_b")))
    out.print(table)
    differing = [p for p in comparison.pairs if p.status != "same"]
    for pair in differing[:DIFFERENCES_SHOWN]:
        a, b_incident = pair.a, pair.b
        if pair.status == "only_a" and a is not None:
            out.print(f"  only in A: {a.dedupe_key} opened {a.opened_at.isoformat()}", highlight=False, soft_wrap=True)
        elif pair.status == "only_b" and b_incident is not None:
            out.print(f"  only in B: {b_incident.dedupe_key} opened {b_incident.opened_at.isoformat()}",
                      highlight=False)
        elif a is not None and b_incident is not None:
            out.print(f"  different: {a.dedupe_key} A {_period(a.opened_at, a.resolved_at)}, "
                      f"B {_period(b_incident.opened_at, b_incident.resolved_at)}", highlight=False, soft_wrap=True)
    if len(differing) > DIFFERENCES_SHOWN:
        out.print(f"  … and {len(differing) - DIFFERENCES_SHOWN} more (--json or --csv lists them all)")
    if comparison.b == STORE:
        counts = comparison.counts()
        verdict = ("the backtest reproduces the store" if comparison.identical else
                   f"{counts['different'] + counts['only_a'] + counts['only_b']} differ from the store")
        out.print(f"{counts['same']} incidents as the store holds them; {verdict}", highlight=False, soft_wrap=True)


def _period(opened: datetime, resolved: datetime | None) -> str:
    return f"{opened.isoformat()} → {resolved.isoformat() if resolved else 'open'}"
