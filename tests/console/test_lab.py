"""The rule lab through the real API and in a real headless Chromium, on a gateway over real Mosquitto and
PostgreSQL: a container's history opens "container full" in the store; a rule file's text is checked with
file:line messages; a backtest runs as a job (202, progress, result) in a process of its own, reproduces
the store with the deployed rules and shows what a changed threshold would not have opened; in the
console the same, typed in the browser, with the result in a table, a timeline and on the map, and the
file downloaded as edited. Nothing is written: no incident, no rule state, no rule file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.devices import Device
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from tests.console.conftest import BROWSER_NEEDED, Console, console_running, screenshot, sign_in
from tests.support import REPO, publish, scalar, wait_until

START = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
CONTAINERS = REPO / "rules" / "containers.yaml"
TOKENS = {"viewer": "lab-viewer-token", "operator": "lab-operator-token"}


def _history(console: Console) -> None:
    """C-LAB at 85% for an hour (container full opens after 20 minutes), then emptied."""
    upsert_devices(console.settings.database_url, [Device(
        "C-LAB", "container", "container", "Lab container", 41.3915, 2.1650, MappingProxyType({"bin_depth_mm": 1200}))])
    wait_until(lambda: console.gateway.devices.get("C-LAB") is not None, timeout_s=10)
    levels = [85.0] * 7 + [10.0] * 3
    messages = [("containers/C-LAB/telemetry", json.dumps({
        "ts": (START + timedelta(minutes=10 * i)).isoformat(), "fill_pct": level, "battery_pct": 80,
        "temperature_c": 15.0, "tilted": False})) for i, level in enumerate(levels)]
    publish(console.settings.mqtt_url, messages)
    wait_until(lambda: scalar(console.settings.database_url,
                              "SELECT count(*) FROM incidents WHERE dedupe_key = 'container-full:C-LAB' "
                              "AND resolved_at IS NOT NULL") == 1, timeout_s=20)


@pytest.fixture
def lab(console: Console) -> Iterator[Console]:
    _history(console)
    yield console


@pytest.fixture
def console(settings: Settings) -> Iterator[Console]:
    """The console, with staff API tokens."""
    with console_running(settings.model_copy(update={
            "api_tokens": [f"{token}:{role}" for role, token in TOKENS.items()]})) as running:
        yield running


def _api(console: Console, role: str = "operator") -> httpx.Client:
    return httpx.Client(base_url=console.url, timeout=20, headers={"Authorization": f"Bearer {TOKENS[role]}"})


def _finished(client: httpx.Client, job: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        answer: dict[str, Any] = client.get(f"/api/v1/rules/backtest/{job}").json()
        return answer if answer["status"] != "running" else None

    found = wait_until(finished, timeout_s=120, interval_s=0.3)
    assert found is not None
    return found


def _writes(url: str) -> tuple[int, int]:
    """Incidents and their events (the live gateway beside keeps its own rule states up to date)."""
    return scalar(url, "SELECT count(*) FROM incidents"), scalar(url, "SELECT count(*) FROM incident_events")


def test_the_api_checks_rule_text_and_backtests_as_a_job(lab: Console) -> None:
    url = lab.settings.database_url
    before = _writes(url)
    text = CONTAINERS.read_text()
    with _api(lab) as client:
        broken = text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >=")
        line = next(n for n, row in enumerate(broken.splitlines(), 1) if "condition: fill_pct >=" in row)
        checked = client.post("/api/v1/rules/check", json={"yaml": broken, "file": "containers.yaml"}).json()
        assert not checked["ok"] and checked["problems"][0].startswith(f"containers.yaml:{line}: rule container-full")
        refused = client.post("/api/v1/rules/backtest", json={"last": "1d", "rules_yaml": broken,
                                                              "file": "containers.yaml"})
        assert refused.status_code == 400 and refused.json()["problems"][0].startswith(f"containers.yaml:{line}:")
        for body, message in (({"last": "1d", "rule": "nope"}, "no rule 'nope'"),
                              ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "empty range"),
                              ({"last": "1d", "file": "../services.yaml"}, "not one of the deployed"),
                              ({"last": "soon"}, "not a duration")):
            answer = client.post("/api/v1/rules/backtest", json=body)
            assert answer.status_code == 400 and message in answer.text, answer.text
        assert client.post("/api/v1/rules/backtest", json={"until": "2026-12-01T00:00:00Z"}).status_code == 422

        # the deployed rules over the history reproduce the store
        started = client.post("/api/v1/rules/backtest", json={"since": (START - timedelta(minutes=5)).isoformat()})
        assert started.status_code == 202 and started.headers["location"].endswith(started.json()["id"])
        job = _finished(client, started.json()["id"])
        assert job["status"] == "done" and job["progress"] == 1.0, job
        store = job["result"]["comparisons"][0]
        assert store["b"] == "store" and store["counts"]["same"] >= 1 and store["differences"] == []
        assert job["result"]["summaries"]["deployed"]["container-full"]["opened"] == 1

        # the edited threshold (90%) would not have opened it
        edited = text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >= 90.0")
        started = client.post("/api/v1/rules/backtest", json={
            "since": (START - timedelta(minutes=5)).isoformat(), "rules_yaml": edited, "file": "containers.yaml",
            "rule": "container-full"})
        job = _finished(client, started.json()["id"])
        comparison = job["result"]["comparisons"][0]
        assert (comparison["a"], comparison["b"]) == ("candidate", "deployed")
        assert comparison["counts"] == {"same": 0, "different": 0, "only_a": 0, "only_b": 1}
        assert comparison["differences"][0]["b"]["subject"] == "C-LAB"

        assert client.get("/api/v1/rules/backtest/0123456789ab").status_code == 404
    with _api(lab, "viewer") as viewer:
        assert viewer.post("/api/v1/rules/backtest", json={"last": "1d"}).status_code == 403
    assert _writes(url) == before
    assert CONTAINERS.read_text() == text  # and no rule file was written


@BROWSER_NEEDED
def test_the_console_lab_edits_checks_runs_and_downloads(lab: Console, browser: WebDriver, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    sign_in(browser, lab, "olga")
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "nav-lab")))
    browser.get(f"{lab.url}/console/lab?file=containers.yaml")
    problems = browser.find_element(By.ID, "lab-problems")
    WebDriverWait(browser, 15).until(lambda d: "valid" in problems.text)
    editor = browser.find_element(By.ID, "lab-yaml")
    text = editor.get_attribute("value") or ""
    broken = text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >=")
    line = next(n for n, row in enumerate(broken.splitlines(), 1) if "condition: fill_pct >=" in row)

    def type_text(value: str) -> None:
        browser.execute_script("arguments[0].value = arguments[1];"
                               "arguments[0].dispatchEvent(new Event('input'));", editor, value)

    type_text(broken)
    WebDriverWait(browser, 15).until(lambda d: f"containers.yaml:{line}: rule container-full" in problems.text)
    screenshot(browser, "lab-problem")
    type_text(text.replace("condition: fill_pct >= 80.0", "condition: fill_pct >= 90.0"))
    WebDriverWait(browser, 15).until(lambda d: "valid" in problems.text)
    browser.find_element(By.ID, "lab-rule").send_keys("container-full")
    browser.find_element(By.ID, "lab-run").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.ID, "lab-result").is_displayed())
    row = browser.find_element(By.CSS_SELECTOR, "#lab-rules tr[data-rule='container-full']")
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells[:3] == ["container-full", "0", "1"] and cells[6] == "1", cells  # only in the deployed version
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lab-map .lab-incident.only_b"))
    assert browser.find_elements(By.CSS_SELECTOR, "#lab-timeline rect.only_b")
    screenshot(browser, "lab-result")
    browser.find_element(By.ID, "lab-download").click()
    saved = downloads / "containers.yaml"
    wait_until(lambda: saved.exists() and "fill_pct >= 90.0" in saved.read_text(), timeout_s=15)
    assert CONTAINERS.read_text() == text  # the console wrote nothing on the server


@BROWSER_NEEDED
def test_the_lab_is_for_operators(lab: Console, browser: WebDriver) -> None:
    sign_in(browser, lab, "vera")
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "nav-stats")))
    assert not browser.find_elements(By.ID, "nav-lab")
    browser.get(f"{lab.url}/console/lab")
    assert "operator" in browser.find_element(By.TAG_NAME, "main").text
