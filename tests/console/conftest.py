"""A gateway with its API and console on a free port, over real Mosquitto and PostgreSQL, and users; a headless
Chromium driven by selenium, and its helpers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.app import Gateway
from gateway.console.auth import hash_password
from gateway.embedded.ports import free_port
from gateway.settings import Settings
from gateway.store.users import upsert_user
from tests.support import REPO, running_gateway

USERS = {"olga": ("operator", "olga-password-1"), "vera": ("viewer", "vera-password-1")}


@dataclass
class Console:
    url: str
    settings: Settings
    gateway: Gateway


@pytest.fixture
def console(settings: Settings) -> Iterator[Console]:
    with console_running(settings) as running:
        yield running


@contextmanager
def console_running(settings: Settings) -> Iterator[Console]:
    port = free_port()
    settings = settings.model_copy(update={"api_enabled": True, "api_port": port, "sweep_s": 1.0,
                                           "device_refresh_s": 0.5,
                                           "open311_api_keys": ["k"]})
    for name, (role, password) in USERS.items():
        upsert_user(settings.database_url, name, hash_password(password), role, None)
    with running_gateway(settings) as gateway:
        yield Console(f"http://127.0.0.1:{port}", settings, gateway)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts" / "console"

BROWSER_NEEDED = pytest.mark.skipif(not Path(CHROMEDRIVER).exists(), reason="chromium-driver is not installed "
                                "(.ci/run installs it: apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", "--window-size=1280,900", "--lang=en-US",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def sign_in(driver: WebDriver, console: Console, name: str, password: str | None = None) -> None:
    driver.get(f"{console.url}/console/")
    WebDriverWait(driver, 15).until(expected_conditions.presence_of_element_located((By.ID, "signin")))
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password or USERS[name][1])
    driver.find_element(By.ID, "signin").click()
