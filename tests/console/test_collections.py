"""The Collections pages in a real browser (headless Chromium), over the real gateway, Mosquitto and
PostgreSQL on a fixed clock: a day's ledger kept live from the trucks' readings (coverage per round, each
stop's status), its CSV, the figures, and the next day's plan on the map; a viewer sees the coverage but
no address, and a bad date is a page that says so."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.console.auth import hash_password
from gateway.devices import Device
from gateway.embedded.ports import free_port
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from gateway.store.users import upsert_user
from simulators.month import MADRID
from tests.console.conftest import BROWSER_NEEDED, USERS, Console, screenshot, sign_in
from tests.console.test_accounts import signed_in
from tests.support import REPO, publish, running_gateway, scalar, wait_until

pytestmark = BROWSER_NEEDED
DAY = datetime(2026, 3, 2, tzinfo=MADRID)  # a Monday
HOUSEHOLDS = [
    {"id": "H-1", "tag": "E2000000000000A1", "address": "Carrer de Mallorca 401", "lat": 41.4036, "lon": 2.1744,
     "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
    {"id": "H-2", "tag": "E2000000000000B2", "address": "Carrer de València 310", "lat": 41.3963, "lon": 2.1650,
     "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
    {"id": "H-3", "tag": "E2000000000000C3", "address": "Carrer del Bruc 150", "lat": 41.3990, "lon": 2.1640,
     "service_area": "Eixample", "days": ["mon"], "window": "06:00-09:00"},
]


def local(hour: int, minute: int) -> datetime:
    return DAY.replace(hour=hour, minute=minute).astimezone(UTC)


@pytest.fixture
def console(settings: Settings, tmp_path: Path) -> Iterator[Console]:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules, ignore=shutil.ignore_patterns("tests"))
    (rules / "data" / "households.yaml").write_text(json.dumps({"households": HOUSEHOLDS}), encoding="utf-8")
    port = free_port()
    settings = settings.model_copy(update={"api_enabled": True, "api_port": port, "rules_dir": rules,
                                           "ledger_s": 0.3, "ledger_late_s": 400 * 86400.0,
                                           "device_refresh_s": 0.5})
    for name, (role, password) in USERS.items():
        upsert_user(settings.database_url, name, hash_password(password), role, None)
    upsert_devices(settings.database_url, [
        Device("T-EIX", "truck", "truck", "4417 KLM", attributes=MappingProxyType({"capacity_l": 12_000})),
        *(Device(f"C-{i}", "container", "container", f"Provença {100 + i}", 41.392 + i * 0.001, 2.160 + i * 0.001,
                 MappingProxyType({"collection_days": ["tue"], "capacity_l": 2400})) for i in range(5))])
    clock_at = local(10, 30)
    with running_gateway(settings, lambda: clock_at) as gateway:
        publish(settings.mqtt_url, [("trucks/T-EIX/telemetry", json.dumps(payload).encode()) for payload in (
            {"ts": local(7, 42).isoformat(), "lat": 41.40362, "lon": 2.17441, "event": "bin_lift",
             "rfid": "E2000000000000A1", "weight_kg": 11.0},
            {"ts": local(7, 50).isoformat(), "lat": 41.39632, "lon": 2.16505})])
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM collection_ledger") == 2)
        yield Console(f"http://127.0.0.1:{port}", settings, gateway)


def test_a_days_ledger_and_the_next_days_plan_in_the_browser(console: Console, browser: WebDriver) -> None:
    sign_in(browser, console, "olga")
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "nav-collections")))
    browser.find_element(By.ID, "nav-collections").click()
    day = browser.find_element(By.ID, "ledger-day")
    browser.execute_script("arguments[0].value = '2026-03-02'", day)
    browser.find_element(By.ID, "ledger-show").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "ledger")))
    statuses = {row.get_attribute("data-stop"): row.get_attribute("data-status")
                for row in browser.find_elements(By.CSS_SELECTOR, "#ledger tbody tr")}
    assert statuses == {"H-1": "lifted", "H-2": "not_presented", "H-3": "missed"}
    coverage = browser.find_element(By.CSS_SELECTOR, "#coverage tr[data-round='Eixample']")
    assert coverage.get_attribute("data-served") == "0.6667"
    assert "07:42" in browser.find_element(By.CSS_SELECTOR, "#ledger tr[data-stop='H-1']").text
    assert "33.3 %" in browser.find_element(By.ID, "missed-share").text
    screenshot(browser, "collections")
    csv_link = browser.find_element(By.ID, "ledger-csv").get_attribute("href")
    assert csv_link and "day=2026-03-02" in csv_link
    browser.find_element(By.ID, "plan-link").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "plan-map").get_attribute("data-routes") == "1")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".plan-stop")) == 5
    row = browser.find_element(By.CSS_SELECTOR, "#plan-routes tr[data-truck='T-EIX']")
    assert row.text.split()[1:4] == ["5", str(5 * 2400), "12000"]
    screenshot(browser, "plan")


def test_a_viewer_sees_the_coverage_without_addresses_and_a_bad_date_is_a_page(console: Console) -> None:
    with closing(signed_in(console, "vera")) as client:
        page = client.get("/console/collections?day=2026-03-02")
        assert page.status_code == 200 and 'data-round="Eixample"' in page.text
        assert "Mallorca 401" not in page.text and 'id="ledger"' not in page.text  # streets, no doors
        assert client.get("/console/collections.csv?day=2026-03-02").status_code == 403
    with closing(signed_in(console, "olga")) as client:
        csv_text = client.get("/console/collections.csv?day=2026-03-02").text
        assert csv_text.splitlines()[0].startswith("day,round,district") and "Carrer de Mallorca 401" in csv_text
        bad = client.get("/console/collections?day=yesterday")
        assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text
