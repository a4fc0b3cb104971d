"""The console in a real headless Chromium (Debian's chromium and chromium-driver, driven by selenium),
against a gateway on real Mosquitto and PostgreSQL: sign in, watch a truck move on the live map while
positions are published, open a device incident from the map, assign and resolve it, and see the change
in the queue and in Open311. A screenshot of each page goes to test-artifacts/console/ (not committed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import httpx
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.devices import Device
from gateway.store.devices import upsert_devices
from tests.console.conftest import BROWSER_NEEDED, Console, screenshot, sign_in
from tests.support import publish, scalar, sql, wait_until

NOW = datetime.now(UTC).replace(microsecond=0)

pytestmark = BROWSER_NEEDED


def wait_for_status(driver: WebDriver, status: str) -> None:
    """Until the incident page shows `status`: the page is replaced after each form, so an element read
    from the one before may be gone by the time it is asked for its attribute."""
    def shows(d: WebDriver) -> bool:
        try:
            return d.find_element(By.ID, "incident").get_attribute("data-status") == status
        except WebDriverException as exc:  # Chromium's word for an element of the page being replaced
            if "does not belong to the document" in str(exc):
                return False
            raise

    WebDriverWait(driver, 15, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        shows)


def truck_at(seconds: int, lat: float, lon: float, base: datetime = NOW) -> tuple[str, str]:
    return "trucks/T7/telemetry", json.dumps({"ts": (base + timedelta(seconds=seconds)).isoformat(), "lat": lat,
                                              "lon": lon, "speed_kmh": 20.0, "heading_deg": 90})


def truck_marker_position(driver: WebDriver) -> list[float] | None:
    position: list[float] | None = driver.execute_script(
        "const t = window.wastegateMap && window.wastegateMap.trucks.get('T7');"
        "return t ? [t.marker.getLatLng().lat, t.marker.getLatLng().lng] : null;")
    return position


def test_a_wrong_password_shows_a_message(console: Console, browser: WebDriver) -> None:
    sign_in(browser, console, "olga", "not-her-password")
    message = WebDriverWait(browser, 15).until(
        expected_conditions.presence_of_element_located((By.ID, "signin-error")))
    assert "Wrong name or password" in message.text
    screenshot(browser, "signin-refused")


def test_the_map_is_live_and_an_incident_is_worked_from_it_to_open311(console: Console, browser: WebDriver) -> None:
    url = console.settings.database_url
    upsert_devices(url, [Device("C-0042", "container", "container", "València 42", 41.3905, 2.1655,
                                MappingProxyType({"bin_depth_mm": 1200}))])
    publish(console.settings.mqtt_url, [truck_at(0, 41.3900, 2.1600)])
    wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 1)
    wait_until(lambda: console.gateway.devices.get("C-0042") is not None)  # the registry refreshed

    sign_in(browser, console, "olga")
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "map").get_attribute("data-loaded") == "true")
    WebDriverWait(browser, 10).until(lambda d: truck_marker_position(d) is not None)
    assert browser.find_elements(By.CSS_SELECTOR, ".truck-arrow[data-device='T7']")
    assert browser.find_elements(By.CSS_SELECTOR, "path.zone-districtes"), "the shipped districts are drawn"
    screenshot(browser, "map")

    # The truck drives on while the page is open: its marker follows, without a reload.
    publish(console.settings.mqtt_url, [truck_at(10, 41.3910, 2.1620), truck_at(20, 41.3920, 2.1640)])
    WebDriverWait(browser, 20).until(lambda d: (truck_marker_position(d) or [0])[0] > 41.3915)
    # A container catches fire: the incident appears on the map, live too.
    publish(console.settings.mqtt_url, [("containers/C-0042/telemetry", json.dumps(
        {"ts": (NOW + timedelta(seconds=25)).isoformat(), "distance_mm": 400, "temperature_c": 71.0}))])
    wait_until(lambda: scalar(url, "SELECT count(*) FROM incidents WHERE service_code = 'container_fire'") == 1)
    marker = WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, ".incident-marker span[data-service='container_fire']")))
    incident_id = int(marker.get_attribute("data-incident") or 0)
    screenshot(browser, "map-live")
    browser.execute_script("window.wastegateMap.incidents.get(arguments[0]).marker.fire('click')", incident_id)
    link = WebDriverWait(browser, 10).until(expected_conditions.element_to_be_clickable(
        (By.CSS_SELECTOR, "#panel a.open-incident")))
    link.click()

    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "incident")))
    assert browser.find_element(By.ID, "incident").get_attribute("data-incident") == str(incident_id)
    assert browser.find_element(By.CSS_SELECTOR, "#evidence svg.chart").get_attribute("data-points") == "1"
    screenshot(browser, "incident")
    browser.find_element(By.ID, "assignee-input").send_keys("fire-brigade-liaison")
    browser.find_element(By.ID, "action-assign").click()
    wait_for_status(browser, "assigned")
    # A transition the workflow refuses is a message on the page, not an error page.
    browser.find_element(By.ID, "action-resolve").click()
    wait_for_status(browser, "resolved")
    reopen_form_actions = [b.get_attribute("id") for b in browser.find_elements(By.CSS_SELECTOR, "#actions button")]
    assert "action-reopen" in reopen_form_actions and "action-resolve" not in reopen_form_actions
    screenshot(browser, "incident-resolved")

    browser.get(f"{console.url}/console/incidents?status=resolved")
    row = WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, f"#queue tr[data-incident='{incident_id}']")))
    assert row.get_attribute("data-status") == "resolved"
    screenshot(browser, "queue")

    public = httpx.get(f"{console.url}/open311/v2/requests/{incident_id}.json", timeout=10).json()
    assert public[0]["status"] == "closed"  # Open311 has open and closed: resolved is closed there
    assert "València 42" not in json.dumps(public)  # the internal title names the container: staff only


def test_a_refused_transition_is_a_message_on_the_page(console: Console, browser: WebDriver) -> None:
    form = {"api_key": "k", "service_code": "container_full", "lat": "41.39", "long": "2.16",
            "description": "overflowing"}
    created = httpx.post(f"{console.url}/open311/v2/requests.json", data=form, timeout=10)
    assert created.status_code == 200, created.text
    incident_id = int(created.json()[0]["service_request_id"])
    sign_in(browser, console, "olga")
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "map")))
    browser.get(f"{console.url}/console/incidents/{incident_id}")
    browser.find_element(By.ID, "action-close").click()
    wait_for_status(browser, "closed")
    # Another tab closed it meanwhile: this page still offers "acknowledge", which no longer applies.
    browser.get(f"{console.url}/console/incidents/{incident_id}")
    browser.execute_script(
        "const f = document.querySelector('#actions form'); f.querySelector('[name=action]').value = 'acknowledge';"
        "f.submit();")
    error = WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "action-error")))
    assert "acknowledge" in error.text
    screenshot(browser, "transition-refused")


def test_a_device_chart_and_a_trucks_day_replayed(console: Console, browser: WebDriver) -> None:
    url = console.settings.database_url
    upsert_devices(url, [Device("C-0042", "container", "container", "València 42", 41.3905, 2.1655)])
    yesterday = (NOW - timedelta(days=1)).replace(hour=10, minute=0, second=0)  # a whole day, whenever this runs
    publish(console.settings.mqtt_url, [truck_at(s, 41.3900 + s * 1e-5, 2.1600, yesterday) for s in range(0, 600, 5)])
    wait_until(lambda: scalar(url, "SELECT count(*) FROM telemetry") == 120)
    sql(url, """INSERT INTO telemetry (time, device_id, message_key, received_at, profile, fill_pct)
                SELECT t, 'C-0042', decode(md5(t::text), 'hex'), t, 'container', 10 + extract(hour FROM t)
                FROM generate_series(now() - interval '20 hours', now(), interval '1 hour') t""")
    sign_in(browser, console, "olga")
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((By.ID, "nav-devices")))
    browser.find_element(By.ID, "nav-devices").click()
    WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "#devices tr[data-device='C-0042'] a"))).click()
    chart = WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, ".chart-box[data-field='fill_pct'] svg.chart")))
    assert int(chart.get_attribute("data-points") or 0) >= 15
    screenshot(browser, "device")
    browser.get(f"{console.url}/console/devices/T7?day={yesterday.date().isoformat()}")
    WebDriverWait(browser, 15).until(lambda d: int(d.find_element(By.ID, "route-map").get_attribute("data-points")
                                                  or 0) > 10)
    before = browser.find_element(By.ID, "route-time").text
    browser.execute_script("const s = document.getElementById('route-slider'); s.value = s.max;"
                           "s.dispatchEvent(new Event('input'));")
    assert browser.find_element(By.ID, "route-time").text > before  # the slider moved the truck on in time
    screenshot(browser, "route")
