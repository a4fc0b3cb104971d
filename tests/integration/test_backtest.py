"""The rule lab on real history: the simulated city through the live gateway (Mosquitto, the decode stage,
the rules, PostgreSQL), then a backtest of the same rules over the same range reproduces the store's
incidents (same dedupe keys, same device-time openings and resolutions) and writes nothing; a rule set
with one threshold changed gives the difference the simulator's truth predicts."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from gateway.catalogue import load_service_codes
from gateway.cli import app
from gateway.devices import DeviceDirectory
from gateway.embedded.mosquitto import Mosquitto
from gateway.embedded.postgres import Postgres
from gateway.lab.backtest import (
    STORE,
    BacktestError,
    BacktestPlan,
    RuleSource,
    capture_readings,
    load_rule_set,
    run_plan,
)
from gateway.lab.cases import save_cases
from gateway.profiles.loader import load_profiles
from gateway.rules.testcases import run_case
from gateway.settings import Settings
from gateway.sources.mqtt import MqttPublisher
from gateway.sources.replay import HistoryFilter
from gateway.store.devices import devices_by_id, upsert_devices
from simulators.city import City, demo_start
from simulators.clock import SimClock
from tests.conftest import TEMPLATE, _throwaway_database
from tests.support import running_gateway, scalar, sql

REPO = Path(__file__).resolve().parents[2]
# An hour of the city (every event of its truth happens in it) at ×120: half a minute. The live gateway's
# sweeps then judge a collection window five seconds after its last lift was published, ample time for
# the lift to be committed first, so the live run and the backtest see the same order of things.
SPEEDUP = 120.0
CITY_MINUTES = 60


@dataclass(frozen=True)
class CityHistory:
    settings: Settings
    since: datetime
    until: datetime
    city: City
    capture: Path  # every message published, as a JSONL capture


def city_rules(directory: Path, city: City) -> Path:
    rules_dir = directory / "rules"
    shutil.copytree(REPO / "rules", rules_dir)
    (rules_dir / "data" / "households.yaml").write_text(city.households_yaml())
    collection = rules_dir / "collection.yaml"
    collection.write_text(collection.read_text().replace("grace: 30m", "grace: 5m"))
    return rules_dir


@pytest.fixture(scope="module")
def city_history(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CityHistory]:
    """An hour of the city at ×120, through a real gateway into a database of its own."""

    directory = tmp_path_factory.mktemp("city")
    clock = SimClock(demo_start(datetime.now(UTC) - timedelta(days=1)), SPEEDUP)
    city = City(clock.start)
    rules_dir = city_rules(directory, city)
    databases = _throwaway_database(postgres, "city", TEMPLATE)
    database_url = next(databases)
    with Mosquitto(directory / "mosquitto") as broker:
        settings = Settings(
            database_url=database_url, mqtt_url=broker.url, mqtt_client_id="wastegate-test-backtest",
            profiles_dir=REPO / "device_profiles", rules_dir=rules_dir, services_file=REPO / "services.yaml",
            api_enabled=False, batch_max_age_ms=50, device_rate_limit_per_s=0, sweep_s=0.5,
            device_refresh_s=1.0, _env_file=None)
        upsert_devices(database_url, city.registered_devices())
        with running_gateway(settings, clock) as gateway:
            publisher = MqttPublisher(broker.url, "wastegate-test-city", "5")
            clock.restart()
            capture = directory / "capture.jsonl"
            try:
                with capture.open("w") as lines:
                    while clock.now() < clock.start + timedelta(minutes=CITY_MINUTES):
                        for topic, payload in city.messages_until(clock.now()):
                            publisher.publish(topic, payload)
                            lines.write(json.dumps({"topic": topic, "payload_b64": base64.b64encode(payload).decode(),
                                                    "received_at": clock.now().isoformat()}) + "\n")
                        time.sleep(0.05)
            finally:
                publisher.close()
            time.sleep(1.0)
            assert gateway.pipeline is not None
    until = clock.start + timedelta(minutes=CITY_MINUTES)
    yield CityHistory(settings, clock.start, until, city, capture)
    next(databases, None)


def _plan(history: CityHistory, rules_dir: Path, other: Path | None = None, workers: int = 1) -> BacktestPlan:
    codes = load_service_codes(history.settings.services_file)
    rules = RuleSource(history.settings.rules_dir, rules_dir, service_codes=codes)
    return BacktestPlan(
        HistoryFilter(history.since, history.until), rules,
        compare=RuleSource(rules_dir, other, service_codes=codes) if other else None, compare_name="other",
        with_store=other is None, sweep_every=timedelta(seconds=history.settings.sweep_s * SPEEDUP),
        workers=workers)


def _intervals(settings: Settings) -> dict[str, float | None]:
    return {p.name: p.config.defaults.expected_interval_s for p in load_profiles(settings.profiles_dir).profiles}


def _writes(url: str) -> tuple[int, int, int]:
    return (scalar(url, "SELECT count(*) FROM incidents"), scalar(url, "SELECT count(*) FROM incident_events"),
            scalar(url, "SELECT count(*) FROM rule_state"))


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "devices-split-over-two"])
def test_a_backtest_of_the_deployed_rules_reproduces_the_store(city_history: CityHistory, workers: int) -> None:
    url = city_history.settings.database_url
    stored = sql(url, "SELECT dedupe_key, first_seen_at, resolved_at FROM incidents WHERE source = 'device_rule' "
                      "ORDER BY dedupe_key, first_seen_at")
    assert len({key for key, _, _ in stored}) >= 8, stored  # the city's causes reached the store
    before = _writes(url)
    report = run_plan(url, _plan(city_history, city_history.settings.rules_dir, workers=workers),
                      _intervals(city_history.settings))
    assert _writes(url) == before  # not one incident, event or rule state written
    comparison = next(c for c in report.comparisons if c.b == STORE)
    differing = [(p.status, p.a.as_json() if p.a else None, p.b.as_json() if p.b else None)
                 for p in comparison.pairs if p.status != "same"]
    assert differing == []
    would_be = sorted((i.dedupe_key, i.opened_at, i.resolved_at) for i in report.runs["rules"])
    assert would_be == sorted(tuple(row) for row in stored)
    assert report.stats.readings == scalar(url, "SELECT count(*) FROM telemetry WHERE time >= %s AND time < %s",
                                           [city_history.since, city_history.until])


def test_one_threshold_changed_gives_the_difference_the_truth_predicts(city_history: CityHistory,
                                                                       tmp_path: Path) -> None:
    """The city fills C-0002 past 80% on purpose (the truth), and no other container reaches 95%: at 95%
    the full container is no longer caught, and nothing else changes."""
    other = tmp_path / "rules"
    shutil.copytree(city_history.settings.rules_dir, other, symlinks=True)
    containers = other / "containers.yaml"
    containers.write_text(containers.read_text().replace("condition: fill_pct >= 80.0", "condition: fill_pct >= 97.0"))
    report = run_plan(city_history.settings.database_url, _plan(city_history, city_history.settings.rules_dir, other),
                      _intervals(city_history.settings))
    comparison = report.comparisons[0]
    only_deployed = [p.incident.dedupe_key for p in comparison.of("only_a")]
    truth = [e.subject for e in city_history.city.expected if e.service_code == "container_full"]
    assert only_deployed == [f"container-full:{subject}" for subject in truth]
    assert comparison.of("only_b") == [] and comparison.of("different") == []
    assert comparison.counts()["same"] == len(report.runs["rules"]) - len(truth)


def test_the_command_prints_per_rule_figures_and_writes_json_and_csv(city_history: CityHistory,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = city_history.settings
    for name, value in (("DATABASE_URL", settings.database_url), ("RULES_DIR", str(settings.rules_dir)),
                        ("PROFILES_DIR", str(settings.profiles_dir)), ("SERVICES_FILE", str(settings.services_file)),
                        ("SWEEP_S", str(settings.sweep_s * SPEEDUP))):
        monkeypatch.setenv(f"WASTEGATE_{name}", value)
    result = CliRunner().invoke(app, ["rules", "backtest", "--since", city_history.since.isoformat(),
                                      "--until", city_history.until.isoformat(), "--json", str(tmp_path / "b.json"),
                                      "--csv", str(tmp_path / "b.csv")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "container-full" in result.output and "the backtest reproduces the store" in result.output
    written = json.loads((tmp_path / "b.json").read_text())
    assert written["summaries"]["store"]["container-full"]["opened"] == 1
    assert written["comparisons"][0]["counts"]["only_a"] == 0
    rows = (tmp_path / "b.csv").read_text().splitlines()
    assert rows[0].startswith("set,match,rule_id") and len(rows) == 1 + sum(
        len(v) for v in written["incidents"].values())

    focused = CliRunner().invoke(app, ["rules", "backtest", "--since", city_history.since.isoformat(), "--until",
                                       city_history.until.isoformat(), "--rule", "no-such-rule"])
    assert focused.exit_code == 2 and "no rule 'no-such-rule'" in focused.output
    backwards = CliRunner().invoke(app, ["rules", "backtest", "--since", city_history.until.isoformat(),
                                         "--until", city_history.since.isoformat()])
    assert backwards.exit_code == 2 and "empty range" in backwards.output
    empty = CliRunner().invoke(app, ["rules", "backtest", "--since", "2001-01-01", "--until", "2001-01-02"])
    assert empty.exit_code == 2 and "no readings are stored" in empty.output

    other = tmp_path / "other"
    shutil.copytree(settings.rules_dir, other, symlinks=True)
    containers = other / "containers.yaml"
    containers.write_text(containers.read_text().replace("condition: fill_pct >= 80.0", "condition: fill_pct >= 97.0"))
    compared = CliRunner().invoke(app, ["rules", "backtest", "--since", city_history.since.isoformat(), "--until",
                                        city_history.until.isoformat(), "--compare", str(other), "--no-store",
                                        "--workers", "1"])
    assert compared.exit_code == 0, compared.output
    assert "only in A: container-full:C-0002" in compared.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(containers.read_text().replace("kind: threshold", "kind: thresold", 1))
    refused = CliRunner().invoke(app, ["rules", "backtest", "--last", "1d", "--rules", str(broken)])
    assert refused.exit_code == 2 and f"{broken}:" in refused.output and "thresold" in refused.output

    opened = sql(settings.database_url,
                 "SELECT first_seen_at FROM incidents WHERE dedupe_key = 'container-full:C-0002'")
    saved = CliRunner().invoke(app, ["rules", "backtest", "--rules", str(other), "--save-case", "c2", "--device",
                                     "C-0002", "--around", opened[0][0].isoformat(), "--rule", "container-tilted",
                                     "--window", "30m"])
    assert saved.exit_code == 0, saved.output
    assert (other / "tests" / "c2.yaml").exists() and "0 findings expected" in saved.output
    bad_capture = tmp_path / "bad.jsonl"
    bad_capture.write_text('{"topic": "trucks/T1/telemetry", "payload": "{}"}\nnot json\n')
    refused = CliRunner().invoke(app, ["rules", "backtest", "--last", "1d", "--capture", str(bad_capture)])
    assert refused.exit_code == 2 and f"{bad_capture}:2: not a message" in refused.output, refused.output
    again = CliRunner().invoke(app, ["rules", "backtest", "--rules", str(other), "--save-case", "c2", "--device",
                                     "C-0002", "--around", opened[0][0].isoformat(), "--rule", "container-tilted"])
    assert again.exit_code == 2 and "exists already" in again.output  # an existing case is not overwritten
    assert not list((other / "tests").glob(".*draft"))


def test_an_empty_history_is_refused(city_history: CityHistory) -> None:
    plan = _plan(city_history, city_history.settings.rules_dir)
    plan.history = HistoryFilter(city_history.since, city_history.until, devices=("NOBODY",))
    with pytest.raises(BacktestError, match="no reading"):
        run_plan(city_history.settings.database_url, plan, _intervals(city_history.settings))


def test_a_capture_file_backtests_like_the_stored_history(city_history: CityHistory) -> None:
    """The same messages from a JSONL capture, decoded by the gateway's decode stage: the same incidents."""
    profiles = load_profiles(city_history.settings.profiles_dir)
    with psycopg.connect(city_history.settings.database_url, autocommit=True) as conn:
        devices = DeviceDirectory(devices_by_id(conn))
    report = run_plan(city_history.settings.database_url, _plan(city_history, city_history.settings.rules_dir),
                      _intervals(city_history.settings), readings=capture_readings(city_history.capture, profiles,
                                                                                    devices))
    assert report.comparisons[0].identical, report.comparisons[0].as_json()["differences"]
    assert report.stats.readings == scalar(city_history.settings.database_url, "SELECT count(*) FROM telemetry")


def test_a_real_stretch_of_history_becomes_a_rule_test_case(city_history: CityHistory, tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(city_history.settings.rules_dir, rules_dir, symlinks=True)
    codes = load_service_codes(city_history.settings.services_file)
    rules = load_rule_set(rules_dir, rules_dir, codes)
    (opened,) = sql(city_history.settings.database_url,
                    "SELECT first_seen_at FROM incidents WHERE dedupe_key = 'container-full:C-0002'")
    with psycopg.connect(city_history.settings.database_url, autocommit=True) as conn:
        written = save_cases(conn, rules, rules_dir, "c0002-full", "C-0002", opened[0], timedelta(minutes=40), None,
                             _intervals(city_history.settings), timedelta(minutes=1))
    ((path, found),) = written  # only the rule that found something: container-full
    case = yaml.safe_load(path.read_text())
    assert case["rule"] == "container-full" and found == 1
    assert [e["action"] for step in case["steps"] for e in step.get("expect", [])] == ["open"]
    assert run_case(path, rules).ok
    # and it is a regression test: a rule that no longer opens there fails it
    containers = rules_dir / "containers.yaml"
    containers.write_text(containers.read_text().replace("condition: fill_pct >= 80.0", "condition: fill_pct >= 99.0"))
    changed = run_case(path, load_rule_set(rules_dir, rules_dir, codes))
    assert not changed.ok and "expected" in changed.problems[0]
    with psycopg.connect(city_history.settings.database_url, autocommit=True) as conn, \
            pytest.raises(BacktestError, match="no device 'NOBODY'"):
        save_cases(conn, rules, rules_dir, "x", "NOBODY", opened[0], timedelta(minutes=5), None, {},
                   timedelta(minutes=1))
